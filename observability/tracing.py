"""Traces: one trace from the webhook through the workflow and its activities.

FastAPI's instrumentation opens the server span; the Temporal SDK's `TracingInterceptor`
(on the client that starts the workflow and on the worker) carries its context in the
workflow's headers, so the workflow's and each activity's spans join the same trace. On only
when OTEL_EXPORTER_OTLP_ENDPOINT is set (the OTLP/HTTP exporter reads it, and the other
OTEL_* variables, itself); off, nothing is created at all.

The provider is passed explicitly rather than installed globally, so a process (or a test)
may hold more than one.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.contrib.opentelemetry import TracingInterceptor


def tracer_provider(service: str, env: Mapping[str, str]) -> TracerProvider | None:
    if not env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or service})
    )
    # The endpoint from `env` (the exporter alone would read os.environ); an explicit one is
    # used as given, so the signal's path is added here, as the exporter does for the base.
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
        env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def temporal_interceptor(provider: TracerProvider | None) -> list[TracingInterceptor]:
    """The client (and so worker) interceptor that carries the trace through Temporal."""
    if provider is None:
        return []
    return [TracingInterceptor(provider.get_tracer("paysaga.temporal"))]
