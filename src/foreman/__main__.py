from foreman.cli import main

main()
