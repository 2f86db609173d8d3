"""OpenTelemetry from the standard ``OTEL_*`` variables, as the CLI uses it.

Export is on when the environment asks for it: ``OTEL_TRACES_EXPORTER`` names an exporter
(not ``none``), or an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED=true`` turns it off. The SDK
reads the rest itself (service name and resource attributes, endpoint, headers, timeout,
compression, batching), so every variable its documentation lists works as documented.
The service name defaults to ``foreman``.

Exporters: ``otlp`` over HTTP/protobuf (the default; ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``
needs ``opentelemetry-exporter-otlp-proto-grpc``) and ``console`` (to stderr, so it never
mixes with an answer or ``--json`` on stdout).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from foreman.errors import ConfigError
from foreman.tracing.otel import require

_OTLP_EXPORTERS = {
    "http/protobuf": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "grpc": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
}


def wants_export(env: Mapping[str, str] = os.environ) -> bool:
    """True when the ``OTEL_*`` variables ask for traces to be exported."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip():  # an empty variable counts as unset
        return any(name != "none" for name in _exporter_names(env))
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def provider_from_env(env: Mapping[str, str] = os.environ) -> Any:
    """A ``TracerProvider`` exporting as the ``OTEL_*`` variables say, in batches.

    Its ``shutdown()`` sends what is left; a missing package or an unknown exporter is a
    ``ConfigError`` in one line."""
    sdk = require("opentelemetry.sdk.trace")
    export = require("opentelemetry.sdk.trace.export")
    resources = require("opentelemetry.sdk.resources")
    resource = resources.Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(resources.Resource({"service.name": "foreman"}))
    provider = sdk.TracerProvider(resource=resource)
    for name in _exporter_names(env):
        if name != "none":
            provider.add_span_processor(export.BatchSpanProcessor(_exporter(name, env, export)))
    return provider


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    names = (env.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(",")
    return [name.strip() for name in names if name.strip()] or ["otlp"]


def _exporter(name: str, env: Mapping[str, str], export: Any) -> Any:
    if name == "console":
        return export.ConsoleSpanExporter(out=sys.stderr)
    if name != "otlp":
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={name!r} is not supported by foreman; use otlp, console or none."
        )
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    module = _OTLP_EXPORTERS.get(protocol)
    if module is None:
        raise ConfigError(
            f"OTLP protocol {protocol!r} is not supported; use http/protobuf or grpc."
        )
    return require(module).OTLPSpanExporter()
