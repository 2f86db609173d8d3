"""The built-in tools on real files, real processes and a real local HTTP server: what
each does, and every way out of its root a model might try (``..``, absolute paths,
symlinks pointing away), each refused with a ToolError and nothing touched."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from foreman.errors import ConfigError, ToolError
from foreman.tools import RiskLevel, ToolContext
from foreman.tools.builtin import builtin_tool, builtin_tools
from processes import outlives

CONTEXT = ToolContext(
    run_id="r1", task_id="t1", worker="coder", call_id="c1", idempotency_key="r1:t1:c1"
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    tree = tmp_path / "root"
    (tree / "notes").mkdir(parents=True)
    (tree / "notes" / "todo.txt").write_text("buy llamas\n")
    (tree / "big.txt").write_text("x" * 50)
    (tmp_path / "secret.txt").write_text("the password")
    (tree / "away").symlink_to(tmp_path / "secret.txt")
    (tree / "outside").symlink_to(tmp_path)
    (tree / "inside").symlink_to(tree / "notes")
    return tree


async def call(name: str, arguments: dict, **settings) -> str:
    return await builtin_tool(name, settings).call(arguments, CONTEXT)


async def test_read_file_reads_under_the_root_and_cuts_long_files(root: Path) -> None:
    assert await call("read_file", {"path": "notes/todo.txt"}, root=str(root)) == "buy llamas\n"
    assert await call("read_file", {"path": "inside/todo.txt"}, root=str(root)) == "buy llamas\n"
    cut = await call("read_file", {"path": "big.txt"}, root=str(root), max_chars=20)
    assert cut.startswith("x" * 20 + "\n[cut at character 20 of 50")
    rest = await call("read_file", {"path": "big.txt", "offset": 40}, root=str(root))
    assert rest == "x" * 10


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../secret.txt", "outside the tool root"),
        ("notes/../../secret.txt", "outside the tool root"),
        ("away", "outside the tool root"),
        ("outside/secret.txt", "outside the tool root"),
        ("/etc/passwd", "absolute path"),
        ("", "relative to the tool root"),
    ],
)
async def test_every_way_out_of_the_root_is_refused(root: Path, path: str, why: str) -> None:
    for name, arguments in [
        ("read_file", {"path": path}),
        ("list_files", {"path": path}),
        ("write_file", {"path": path, "content": "pwned"}),
    ]:
        with pytest.raises(ToolError, match=why):
            await call(name, arguments, root=str(root))
    assert (root.parent / "secret.txt").read_text() == "the password"
    assert not (root.parent / "pwned").exists()


async def test_read_file_says_what_is_wrong(root: Path) -> None:
    (root / "blob.bin").write_bytes(b"\xff\xfe\x00")
    for path, why in [
        ("nothing.txt", "no file 'nothing.txt'"),
        ("notes", "is a directory"),
        ("blob.bin", "not UTF-8 text"),
    ]:
        with pytest.raises(ToolError, match=why):
            await call("read_file", {"path": path}, root=str(root))
    with pytest.raises(ToolError, match="invalid arguments for read_file"):
        await call("read_file", {"file": "notes/todo.txt"}, root=str(root))


async def test_list_files_lists_a_directory(root: Path) -> None:
    listing = await call("list_files", {}, root=str(root))
    assert listing.splitlines() == [
        ".: 5 entries",
        "away@",
        "big.txt (50 bytes)",
        "inside@",
        "notes/",
        "outside@",
    ]
    assert (await call("list_files", {"path": "notes"}, root=str(root))).splitlines()[1] == (
        "todo.txt (11 bytes)"
    )
    short = await call("list_files", {}, root=str(root), max_entries=2)
    assert short.splitlines()[-1] == "[3 more entries not shown]"


async def test_write_file_writes_under_the_root_only(root: Path) -> None:
    done = await call("write_file", {"path": "out/new.txt", "content": "hé"}, root=str(root))
    assert done == "wrote 3 bytes to out/new.txt"
    assert (root / "out" / "new.txt").read_text() == "hé"
    with pytest.raises(ToolError, match="at most 2 may be written"):
        await call("write_file", {"path": "x.txt", "content": "abc"}, root=str(root), max_bytes=2)
    with pytest.raises(ToolError, match="is a directory"):
        await call("write_file", {"path": "notes", "content": "abc"}, root=str(root))


async def test_shell_runs_in_the_root_with_a_string_or_an_argument_list(root: Path) -> None:
    result = await call("shell", {"command": "pwd; echo oops >&2; exit 3"}, root=str(root))
    assert result.splitlines() == ["exit code: 3", "stdout:", str(root), "stderr:", "oops"]
    listed = await call("shell", {"command": ["ls", "notes; rm -rf /"]}, root=str(root))
    assert listed.startswith("exit code: 2")  # one argument, never a second command
    assert "No such file" in listed


async def test_shell_kills_a_command_past_its_timeout_with_its_children(root: Path) -> None:
    command = "sleep 30 & echo $! > child.pid; wait"
    with pytest.raises(ToolError, match=r"ran past 0\.5 s and was killed"):
        await call("shell", {"command": command}, root=str(root), timeout=0.5)
    child = int((root / "child.pid").read_text())
    assert not await outlives(child)  # the whole process group was killed: the child too


async def test_shell_cuts_long_output_and_refuses_empty_commands(root: Path) -> None:
    result = await call("shell", {"command": "seq 1 5000"}, root=str(root), max_output=100)
    assert "characters cut" in result
    assert result.splitlines()[2] == "1" and "5000" in result
    for empty in ("  ", []):
        with pytest.raises(ToolError, match="empty"):
            await call("shell", {"command": empty}, root=str(root))
    with pytest.raises(ToolError, match="cannot run 'no-such-program-x'"):
        await call("shell", {"command": ["no-such-program-x"]}, root=str(root))


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/redirect-local":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/secret")
            self.end_headers()
            return
        body, kind = {
            "/page": (b"<h1>llamas</h1>", "text/html; charset=utf-8"),
            "/big": (b"y" * 5000, "text/plain"),
            "/image": (b"\x89PNG....", "image/png"),
        }.get(self.path, (b"nope", "text/plain"))
        self.send_response(200 if self.path != "/missing" else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_fetch_gets_text_within_its_limits(site: str) -> None:
    page = await call("fetch", {"url": f"{site}/page"}, allow_private=True)
    assert page == "HTTP 200 text/html; charset=utf-8\n\n<h1>llamas</h1>"
    big = await call("fetch", {"url": f"{site}/big"}, allow_private=True, max_bytes=100)
    assert big.endswith("y" * 100 + "\n[cut at 100 bytes]")
    image = await call("fetch", {"url": f"{site}/image"}, allow_private=True)
    assert image == "HTTP 200 image/png\n[binary content, not shown]"
    missing = await call("fetch", {"url": f"{site}/missing"}, allow_private=True)
    assert missing.startswith("HTTP 404")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "not an http or https URL"),
        ("ftp://example.com/x", "not an http or https URL"),
        ("not a url", "not an http or https URL"),
        ("http://127.0.0.1:9/x", "local or private address"),
        ("http://localhost:9/x", "local or private address"),
        ("http://169.254.169.254/latest/meta-data", "local or private address"),
        ("http://[::1]:9/x", "local or private address"),
    ],
)
async def test_fetch_refuses_other_schemes_and_local_hosts(url: str, why: str) -> None:
    with pytest.raises(ToolError, match=why):
        await call("fetch", {"url": url})


async def test_fetch_checks_every_redirect_hop(site: str, monkeypatch) -> None:
    """A public page redirecting to a local address is refused at that hop (the first
    hop is let through here by treating the test server's address as public)."""
    from foreman.tools.builtin import fetch as fetch_module

    tool = fetch_module.FetchTool()
    checked: list[str] = []
    real = tool._check

    async def check(url, given):
        checked.append(given)
        if not given.startswith(site):
            await real(url, given)

    monkeypatch.setattr(tool, "_check", check)
    with pytest.raises(ToolError, match="local or private address"):
        await tool.fetch(f"{site}/redirect-local")
    assert checked[-1] == "http://127.0.0.1:1/secret"


async def test_fetch_times_out(site: str) -> None:
    slow = threading.Event()

    class Slow(_Pages):
        def do_GET(self) -> None:
            slow.wait(5)
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ToolError, match=r"took longer than 0\.3 s"):
            await call(
                "fetch",
                {"url": f"http://127.0.0.1:{server.server_address[1]}/page"},
                allow_private=True,
                timeout=0.3,
            )
    finally:
        slow.set()
        server.shutdown()
        server.server_close()


def test_risks_and_settings(root: Path) -> None:
    tools = {
        t.name: t
        for t in builtin_tools(
            ["read_file", "list_files", "write_file", "shell", "fetch"], root=root
        )
    }
    assert {name: t.risk for name, t in tools.items()} == {
        "read_file": RiskLevel.low,
        "list_files": RiskLevel.low,
        "write_file": RiskLevel.high,
        "shell": RiskLevel.high,
        "fetch": RiskLevel.medium,
    }
    assert not tools["shell"].idempotent and tools["write_file"].idempotent
    assert tools["read_file"].parameters["required"] == ["path"]
    assert "Read a UTF-8 text file" in tools["read_file"].description
    with pytest.raises(ConfigError, match="No built-in tool named 'rm'"):
        builtin_tool("rm")
    with pytest.raises(ConfigError, match="Built-in tool 'shell': timout: Extra inputs"):
        builtin_tool("shell", {"timout": 3})
    with pytest.raises(ConfigError, match="is not an existing directory"):
        builtin_tool("read_file", {"root": str(root / "nope")})
