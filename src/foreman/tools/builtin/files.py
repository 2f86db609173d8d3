"""Files under a root: ``read_file``, ``list_files`` (risk low) and ``write_file`` (high).

The root is the whole world of these tools. Every path a model gives is taken relative to
it and resolved (``..`` and symlinks followed) before anything is opened; a path that is
absolute, or that resolves outside the root (``../secrets``, a symlink pointing away), is
refused with a ``ToolError`` saying so, and nothing is read or written.
"""

from __future__ import annotations

import os
from pathlib import Path

from foreman.errors import ConfigError, ToolError
from foreman.tools.base import RiskLevel, Tool
from foreman.tools.function import FunctionTool

#: The largest file ``read_file`` reads (it decodes a file whole to cut it in characters).
READ_MAX_BYTES = 32_000_000


def tool_root(root: str | os.PathLike[str]) -> Path:
    """The root resolved once (symlinks included), checked to be an existing directory."""
    resolved = Path(root).expanduser().resolve()
    if not resolved.is_dir():
        raise ConfigError(f"Tool root {str(root)!r} is not an existing directory.")
    return resolved


def confined(root: Path, path: str) -> Path:
    """``path`` resolved under ``root``, or a ``ToolError`` if it would leave it."""
    if not path or "\x00" in path:
        raise ToolError("give a path relative to the tool root (an empty path names nothing).")
    given = Path(path)
    if given.is_absolute() or given.drive:
        raise ToolError(
            f"{path!r} is an absolute path; paths are relative to the tool root, e.g. "
            "'notes/todo.txt'."
        )
    resolved = (root / given).resolve()
    if not resolved.is_relative_to(root):
        raise ToolError(
            f"{path!r} is outside the tool root (through '..' or a symlink); only files "
            "under the root can be used."
        )
    return resolved


def _shown(root: Path, path: Path) -> str:
    relative = path.relative_to(root).as_posix()
    return relative if relative != "." else "."


class FileTools:
    """The file tools of one root, each with its own limit."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_chars: int = 100_000,
        max_entries: int = 500,
        max_bytes: int = 1_000_000,
    ) -> None:
        self.root = tool_root(root)
        self.max_chars = max_chars
        self.max_entries = max_entries
        self.max_bytes = max_bytes

    def read_file(self, path: str, offset: int = 0) -> str:
        """Read a UTF-8 text file under the tool root. ``path`` is relative to the root;
        a long file is cut, and ``offset`` (in characters) reads on from there."""
        target = confined(self.root, path)
        if target.is_dir():
            raise ToolError(f"{path!r} is a directory; list it with list_files.")
        if target.exists() and not target.is_file():  # a FIFO or a device never ends
            raise ToolError(f"{path!r} is not a regular file.")
        try:
            size = target.stat().st_size
            if size > READ_MAX_BYTES:  # read whole before it is cut: bound the memory
                raise ToolError(
                    f"{path!r} is {size} bytes; read_file reads files of at most "
                    f"{READ_MAX_BYTES} bytes."
                )
            data = target.read_bytes()
        except FileNotFoundError:
            raise ToolError(f"no file {path!r} under the tool root.") from None
        except OSError as exc:
            raise ToolError(f"cannot read {path!r}: {exc.strerror or exc}.") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"{path!r} is not UTF-8 text ({len(data)} bytes).") from None
        if offset < 0:
            raise ToolError("offset must be 0 or more.")
        part = text[offset : offset + self.max_chars]
        end = offset + len(part)
        if end < len(text):
            part += f"\n[cut at character {end} of {len(text)}: read on with offset={end}]"
        return part

    def list_files(self, path: str = ".") -> str:
        """List a directory under the tool root, one entry a line: ``name/`` for a
        directory, ``name (N bytes)`` for a file, ``name@`` for a symlink."""
        target = confined(self.root, path)
        if not target.is_dir():
            raise ToolError(f"no directory {path!r} under the tool root.")
        try:
            entries = sorted(os.scandir(target), key=lambda entry: entry.name)
        except OSError as exc:
            raise ToolError(f"cannot list {path!r}: {exc.strerror or exc}.") from None
        lines = []
        for entry in entries[: self.max_entries]:
            if entry.is_symlink():
                lines.append(f"{entry.name}@")
            elif entry.is_dir():
                lines.append(f"{entry.name}/")
            else:
                lines.append(f"{entry.name} ({entry.stat().st_size} bytes)")
        if len(entries) > self.max_entries:
            lines.append(f"[{len(entries) - self.max_entries} more entries not shown]")
        heading = f"{_shown(self.root, target)}: {len(entries)} entries"
        return "\n".join([heading, *lines])

    def write_file(self, path: str, content: str) -> str:
        """Write ``content`` (UTF-8 text) to a file under the tool root, replacing it if
        it exists; missing parent directories are created."""
        target = confined(self.root, path)
        data = content.encode("utf-8")
        if len(data) > self.max_bytes:
            raise ToolError(
                f"content is {len(data)} bytes; at most {self.max_bytes} may be written."
            )
        if target.is_dir():
            raise ToolError(f"{path!r} is a directory.")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target = confined(self.root, path)  # again: a symlink may have appeared meanwhile
            target.write_bytes(data)
        except OSError as exc:
            raise ToolError(f"cannot write {path!r}: {exc.strerror or exc}.") from None
        return f"wrote {len(data)} bytes to {_shown(self.root, target)}"

    def tool(self, name: str) -> Tool:
        """One of ``read_file``, ``list_files``, ``write_file`` as a tool."""
        risk = RiskLevel.high if name == "write_file" else RiskLevel.low
        # rewriting a file with the same content changes nothing: all three are idempotent
        return FunctionTool(getattr(self, name), name=name, risk=risk, idempotent=True)
