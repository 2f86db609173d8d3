#!/usr/bin/env bash
# Install foreman into ./.venv (or $FOREMAN_VENV) with everything it needs, on a fresh machine.
#   bash install.sh            # the package, its CLI and the bundled local model
#   bash install.sh test       # plus the test tools (any extras, comma-separated)
#
# llama-cpp-python compiles llama.cpp from source. A build tuned to the build machine's CPU
# (GGML_NATIVE) can use instructions the sandbox or the CPU cannot run (we saw AMX builds
# crash on the first token), so on x86_64 we build a portable AVX2 variant, once, into a
# wheel cache that later installs reuse.
set -euo pipefail
cd "$(dirname "$0")"
extras="${1:-}"
venv="${FOREMAN_VENV:-.venv}"
llama_version="0.3.36"
wheels="${XDG_CACHE_HOME:-$HOME/.cache}/foreman/wheels"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip

if ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
  if ! ls "$wheels"/llama_cpp_python-"$llama_version"-*.whl >/dev/null 2>&1; then
    echo "Building llama-cpp-python $llama_version (a few minutes, once)..." >&2
    if [ "$(uname -m)" = "x86_64" ]; then
      export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
    fi
    "${pip[@]}" wheel --no-deps --no-cache-dir -w "$wheels" "llama-cpp-python==$llama_version"
  fi
  "${pip[@]}" install --find-links "$wheels" "llama-cpp-python==$llama_version"
fi

"${pip[@]}" install -e ".${extras:+[$extras]}"
echo "foreman installed in $venv: run $venv/bin/foreman --help" >&2
