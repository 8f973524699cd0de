"""Prometheus metrics (names fixed by CONTRACT.md). A name lives where it is measured.

The API process serves `API` at `/metrics`; the worker serves `WORKER` on
PAYSAGA_WORKER_METRICS_PORT together with the Temporal SDK's own metrics. The SDK's runtime
exports those on a Prometheus endpoint of its own (an internal port); `SdkMetrics` reads it
at scrape time and hands its families on, so an operator scrapes one port per process.

Separate registries, not the global one: the tests run an API and a worker in one process,
and each endpoint must show only what its process measures.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

log = logging.getLogger("paysaga.metrics")

API = CollectorRegistry()
WORKER = CollectorRegistry()

# --- API process --------------------------------------------------------------------------
WEBHOOKS = Counter(
    "paysaga_webhooks",
    "Gateway webhooks received, by what became of them.",
    ["provider", "result"],  # accepted, duplicate, ignored, rejected, error
    registry=API,
)
HTTP_SECONDS = Histogram(
    "paysaga_http_request_seconds",
    "HTTP request latency by route template.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=API,
)
API_ESCALATIONS = Counter(
    "paysaga_escalations",
    "Escalations this process recorded for a person (the API: a gateway circuit opening).",
    ["kind"],
    registry=API,
)
OPEN_CASES = Gauge(
    "paysaga_open_cases",
    "Open reconciliation cases by kind (read from the database at scrape time).",
    ["kind"],
    registry=API,
)

# --- worker process -----------------------------------------------------------------------
CONFIRMATIONS = Counter(
    "paysaga_confirmations",
    "Confirmation outcomes: paid, parked (a case opened), refunded, resolved.",
    ["outcome"],
    registry=WORKER,
)
CONFIRMATION_SECONDS = Histogram(
    "paysaga_confirmation_seconds",
    "From the webhook's arrival to the order marked paid.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
    registry=WORKER,
)
NOTIFICATIONS = Counter(
    "paysaga_notifications",
    "Attendee mails: sent, error (will retry), failed (refused for good), skipped.",
    ["kind", "result"],
    registry=WORKER,
)
ESCALATIONS = Counter(
    "paysaga_escalations",
    "Escalations recorded for a person (each once), by kind: money_parked, "
    "confirmation_stuck, refund_failed, circuit_open, mail_failed.",
    ["kind"],
    registry=WORKER,
)


class SdkMetrics(Collector):
    """The Temporal SDK runtime's Prometheus endpoint, re-exposed through our registry."""

    def __init__(self, url: str) -> None:
        self.url = url

    def collect(self) -> Iterable[Metric]:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as response:  # noqa: S310 (our own URL)  # nosec B310
                text = response.read().decode()
        except OSError as exc:
            log.warning("Temporal SDK metrics unavailable at %s: %s", self.url, exc)
            return []
        return list(text_string_to_metric_families(text))


def serve_worker_metrics(host: str, port: int, sdk_url: str | None) -> tuple[WSGIServer, int]:
    """Starts the worker's `/metrics` server in a thread; returns it and the bound port."""
    registry = CollectorRegistry()
    registry.register(_Forward(WORKER))
    if sdk_url:
        registry.register(SdkMetrics(sdk_url))
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server, int(server.server_address[1])


class _Forward(Collector):
    """Another registry's metrics, collected afresh at each scrape."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return list(self.registry.collect())


# --- API process: how long open cases have waited ------------------------------------------
OPEN_CASE_OLDEST_SECONDS = Gauge(
    "paysaga_open_case_oldest_seconds",
    "Age of the oldest open reconciliation case by kind, 0 when none (read with"
    " paysaga_open_cases at scrape time; the alert rules compare it with"
    " PAYSAGA_UNMATCHED_ALERT_SECONDS).",
    ["kind"],
    registry=API,
)


# --- gateway calls (both processes: the API and the worker each call the gateways) --------
class GatewayCallMetrics:
    """`gateways.api.GatewayMetrics` for one registry: each process's `Gateways` is given
    its own (`API_GATEWAYS`, `WORKER_GATEWAYS`), so each `/metrics` shows its own calls."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "paysaga_gateway_call_seconds",
            "Outgoing gateway API calls: create_intent, cancel_intent, look_up, refund, "
            "capture; result ok, refused, unavailable or rate_limited.",
            ["provider", "call", "result"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.state = Gauge(
            "paysaga_gateway_circuit_state",
            "A gateway's circuit breaker: 0 closed, 1 half-open (one trial call), 2 open.",
            ["provider"],
            registry=registry,
        )

    def call(self, provider: str, call: str, result: str, seconds: float) -> None:
        self.seconds.labels(provider, call, result).observe(seconds)

    def circuit(self, provider: str, state: int) -> None:
        self.state.labels(provider).set(state)


API_GATEWAYS = GatewayCallMetrics(API)
WORKER_GATEWAYS = GatewayCallMetrics(WORKER)
