"""Watching runs from the side: observers, logs and OpenTelemetry traces."""

from foreman.tracing.observer import Observer, Observers

__all__ = ["Observer", "Observers"]
