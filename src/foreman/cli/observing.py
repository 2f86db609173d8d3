"""Logs and traces for one ``foreman`` command: ``-v``/``-vv``/``--log-file`` and ``OTEL_*``.

The app's callback calls ``configure`` before any command and has ``close`` called when
the command ends, however it ends (an answer, an error, Ctrl-C): log handlers are removed
and traces flushed, so nothing is lost and nothing leaks into the next command of a process
that runs several (tests do).

Log lines go to stderr, or to the file: stdout keeps only the answer or ``--json`` events.
The stderr handler looks ``sys.stderr`` up at each line, so lines printed while the live
view is drawing go above it instead of tearing it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import typer

from foreman.tracing.logs import logger
from foreman.tracing.observer import Observer

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_handlers: list[logging.Handler] = []
_tracing: dict[str, Any] = {}  # "observer": the command's OTelObserver, once made


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a line is logged."""

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        return None


def configure(verbose: int, log_file: Path | None) -> None:
    """Log at INFO (``-v``, or a ``--log-file`` alone) or DEBUG (``-vv``) under ``foreman``.

    Without either, only warnings reach stderr, one ``warning:`` line each: what a user
    must hear of (an allow-list naming no tool, a memory that could not be kept) and what
    no event carries."""
    close()
    if not verbose and log_file is None:
        warnings = _Stderr()
        warnings.setFormatter(logging.Formatter("warning: %(message)s"))
        logger.addHandler(warnings)
        logger.setLevel(logging.WARNING)
        _handlers.append(warnings)
        return
    handler: logging.Handler
    if log_file is not None:
        try:
            handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot write {log_file}: {exc.strerror or exc}.", param_hint="--log-file"
            ) from None
    else:
        handler = _Stderr()
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    _handlers.append(handler)


def observers() -> list[Observer]:
    """The command's extra observers: an ``OTelObserver`` when ``OTEL_*`` asks for export.

    Made on first use, so commands that run nothing never import OpenTelemetry."""
    from foreman.tracing.otel_env import provider_from_env, wants_export

    if "observer" not in _tracing and wants_export():
        from foreman.tracing.otel import OTelObserver

        _tracing["observer"] = OTelObserver(provider_from_env())
    return [_tracing["observer"]] if "observer" in _tracing else []


def close() -> None:
    """End open traces and send what is left; remove this command's log handlers."""
    observer = _tracing.pop("observer", None)
    if observer is not None:
        observer.close()
        observer.tracer_provider.shutdown()
    while _handlers:
        handler = _handlers.pop()
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.NOTSET)
