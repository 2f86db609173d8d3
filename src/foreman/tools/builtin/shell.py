"""``shell``: run one command with the tool root as its working directory (risk high).

A string runs through ``/bin/sh -c`` (pipes, redirections and globbing work); a list of
strings runs that program with those arguments directly, no shell involved. The command
runs with the user's own rights and environment: the root is only its working directory,
not a sandbox, which is why every call waits for a person's approval of its exact text.
It gets no stdin; past ``timeout`` seconds it is killed (its whole process group) and the
call fails. Its output reaches the model cut to ``max_output`` characters, head and tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from foreman.errors import ToolError
from foreman.tools.base import RiskLevel, Tool
from foreman.tools.builtin.files import tool_root
from foreman.tools.function import FunctionTool

#: Bytes of a stream's head, and of its tail, kept while a command runs.
KEPT = 1_000_000


def clipped(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters: its head and tail, with what was cut said."""
    if len(text) <= limit:
        return text
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... {cut} characters cut ...]\n{text[len(text) - half :]}"


class ShellTool:
    """Runs commands in ``root`` with a timeout."""

    def __init__(self, root: str, *, timeout: float = 60.0, max_output: int = 20_000) -> None:
        self.root = tool_root(root)
        self.timeout = timeout
        self.max_output = max_output

    async def shell(self, command: str | list[str]) -> str:
        """Run a command in the tool root and return its exit code, stdout and stderr. A
        string runs through /bin/sh -c; a list of strings runs that program directly."""
        if isinstance(command, str):
            if not command.strip():
                raise ToolError("the command is empty.")
            argv = ["/bin/sh", "-c", command]
        else:
            if not command:
                raise ToolError("the command is empty.")
            argv = list(command)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.root,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: a timeout kills it all
            )
        except (OSError, ValueError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise ToolError(f"cannot run {argv[0]!r}: {why}.") from None
        try:
            stdout, stderr = await asyncio.wait_for(self._output(process), self.timeout)
        except TimeoutError:
            _kill(process)
            await process.wait()
            raise ToolError(f"the command ran past {self.timeout:g} s and was killed.") from None
        except BaseException:  # cancelled: leave nothing running
            _kill(process)
            raise
        return "\n".join(
            [
                f"exit code: {process.returncode}",
                "stdout:",
                stdout,
                "stderr:",
                stderr,
            ]
        )

    async def _output(self, process: asyncio.subprocess.Process) -> tuple[str, str]:
        """Both streams read to their end, then the exit awaited; only what can be shown
        is kept, so a command that prints without end cannot fill the memory."""
        assert process.stdout is not None and process.stderr is not None
        shown = await asyncio.gather(
            _shown(process.stdout, self.max_output), _shown(process.stderr, self.max_output)
        )
        await process.wait()
        return shown[0], shown[1]

    def tool(self) -> Tool:
        tool = FunctionTool(self.shell, name="shell", risk=RiskLevel.high, idempotent=False)
        tool.timeout = self.timeout + 5  # the command's own timeout kills it first
        return tool


async def _shown(stream: asyncio.StreamReader, limit: int) -> str:
    """A stream's text within ``limit`` characters, head and tail, read to its end while
    keeping at most ``KEPT`` bytes of its head and of its tail."""
    head, tail, total = bytearray(), bytearray(), 0
    while chunk := await stream.read(65_536):
        total += len(chunk)
        room = KEPT - len(head)
        head += chunk[:room]
        tail += chunk[room:] if room > 0 else chunk
        del tail[:-KEPT]
    if total == len(head) + len(tail):  # all of it was kept
        return clipped((head + tail).decode("utf-8", "replace").rstrip("\n"), limit)
    half = limit // 2
    first = head.decode("utf-8", "replace")[:half]
    last = tail.decode("utf-8", "replace").rstrip("\n")[-half:]
    cut = total - len(first.encode()) - len(last.encode())
    return f"{first}\n[... about {cut} bytes cut ...]\n{last}"


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
