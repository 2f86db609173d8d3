"""Child processes for tests: no read blocks without a timeout, no wait runs out quietly,
no child outlives its test, and no child depends on how the test runner was started.

Why SIGINT is reset: a shell without job control (``nohup pytest &``, ``bash -c '... &'``,
most CI wrappers) starts a background job with SIGINT and SIGQUIT *ignored*, and an ignored
signal stays ignored across ``exec``. Python keeps an inherited SIG_IGN instead of installing
its KeyboardInterrupt handler, so a Ctrl-C test would send SIGINT to a child that never
notices it. ``subprocess``'s ``restore_signals`` resets only SIGPIPE/SIGXFZ/SIGXFSZ, and
``preexec_fn`` is unsafe next to the reader threads here, so each child is started through a
tiny exec shim that puts SIGINT back to its default before running the real command.

The CLI itself deliberately keeps an inherited SIG_IGN: that is how a shell tells a program
it runs in the background, where a Ctrl-C typed for the foreground program must not stop it
(POSIX shells, and Python itself, honour it). A background ``foreman`` still stops cleanly on
SIGTERM. So the tests model "a user at a terminal" by restoring the default, not the CLI.
"""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, NoReturn

# Restores SIGINT's default disposition, then becomes the real command (same pid).
SHIM = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)

_EOF = None
_live: list[Child] = []


def _pump(stream: IO[str], into: queue.Queue[str | None]) -> None:
    """Copy a pipe into a queue line by line; ``None`` marks the end."""
    try:
        for line in stream:
            into.put(line)
    finally:
        into.put(_EOF)


class Child:
    """A running child whose stdout and stderr are drained by threads into queues.

    Reading never blocks the test for longer than the timeout given; every wait that runs
    out kills the child and fails with what it wrote to stderr."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.popen = subprocess.Popen(
            [sys.executable, "-c", SHIM, *self.argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._stdout: queue.Queue[str | None] = queue.Queue()
        self._stderr: queue.Queue[str | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=_pump, args=(self.popen.stdout, self._stdout), daemon=True),
            threading.Thread(target=_pump, args=(self.popen.stderr, self._stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._stdout_done = False
        self._stderr_seen: list[str] = []
        _live.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def send_signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=30)

    def readline(self, timeout: float) -> str | None:
        """The next stdout line, or None once stdout is closed. Fails after ``timeout`` s."""
        if self._stdout_done:
            return None
        try:
            line = self._stdout.get(timeout=timeout)
        except queue.Empty:
            self._fail(f"no output line within {timeout} s")
        if line is _EOF:
            self._stdout_done = True
        return line

    def lines(self, timeout: float) -> Iterator[str]:
        """Stdout lines until it closes; each must arrive within ``timeout`` s."""
        while (line := self.readline(timeout)) is not None:
            yield line

    def wait(self, timeout: float) -> int:
        """Wait for exit; on timeout kill the child and fail."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._fail(f"still running after {timeout} s")

    def communicate(self, timeout: float) -> tuple[str, str]:
        """Wait for exit, then return the stdout not yet read and all of stderr."""
        self.wait(timeout)
        for thread in self._threads:  # the pipes close at exit, so this is quick
            thread.join(timeout=timeout)
        return self._drain(self._stdout), self.stderr()

    def stderr(self) -> str:
        """Everything the child wrote to stderr so far."""
        self._stderr_seen.append(self._drain(self._stderr))
        return "".join(self._stderr_seen)

    def _drain(self, lines: queue.Queue[str | None]) -> str:
        out = []
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                return "".join(out)
            if line is not _EOF:
                out.append(line)

    def _fail(self, what: str) -> NoReturn:
        self.kill()
        raise AssertionError(f"child {self.argv!r} {what}; stderr:\n{self.stderr()}")


def spawn(argv: Sequence[str], *, env: dict[str, str] | None = None) -> Child:
    """Start ``argv`` (stdin closed) with SIGINT at its default, output drained by threads."""
    return Child(argv, env=env)


def run(
    argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion like ``subprocess.run(capture_output=True)``; a child still
    running after ``timeout`` s is killed and the test fails."""
    child = spawn(argv, env=env)
    stdout, stderr = child.communicate(timeout)
    return subprocess.CompletedProcess(child.argv, child.popen.returncode, stdout, stderr)


def wait_until(
    condition: Callable[[], object], *, timeout: float, what: str, every: float = 0.02
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def kill_leftovers() -> list[list[str]]:
    """Kill every child still running; return the commands that were still alive."""
    alive = [child for child in _live if child.popen.poll() is None]
    for child in alive:
        child.kill()
    for child in _live:
        for thread in child._threads:  # at EOF once the child is gone
            thread.join(timeout=30)
        for stream in (child.popen.stdout, child.popen.stderr):
            if stream is not None:
                stream.close()
    _live.clear()
    return [child.argv for child in alive]


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


async def outlives(pid: int, seconds: float = 5.0) -> bool:
    """Whether process ``pid`` still runs after up to ``seconds`` of waiting for it to end."""
    for _ in range(int(seconds / 0.05)):
        if not alive(pid):
            return False
        await asyncio.sleep(0.05)
    return alive(pid)
