"""Watching runs from the side: observers, logs and OpenTelemetry traces.

``LoggingObserver`` is on every orchestrator (silent until the ``foreman`` logger is
configured); ``OTelObserver`` sends traces to OpenTelemetry when you add it (``pip install
'foreman[otel]'``). See docs/observability.md.
"""

from foreman.tracing.logs import LoggingObserver
from foreman.tracing.observer import Observer, Observers
from foreman.tracing.otel import OTelObserver

__all__ = ["LoggingObserver", "OTelObserver", "Observer", "Observers"]
