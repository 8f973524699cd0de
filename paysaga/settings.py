"""Settings read from the environment (names fixed by CONTRACT.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from domain.payments import RecoveryTiming
from gateways import Gateways


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    temporal_address: str
    temporal_namespace: str
    task_queue: str
    data_dir: Path
    api_port: int
    temporal_port: int
    temporal_ui_port: int
    jwt_secret: str | None
    payment_window_seconds: int
    refund_window_seconds: int
    recovery: RecoveryTiming
    reconcile_every_seconds: int
    unmatched_alert_seconds: int
    workflow_sandbox: bool
    smtp_host: str | None
    smtp_port: int
    smtp_from: str
    organizer_name: str
    log_format: str
    worker_metrics_host: str
    worker_metrics_port: int | None  # None: no metrics server (0: a free port)
    public_url: str  # where links in mails point (the API's base URL)
    # Every PAYSAGA_ variable as given: each gateway reads its own (`gateways.registry`).
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        temporal_port = int(e.get("PAYSAGA_TEMPORAL_PORT", "7233"))
        api_port = int(e.get("PAYSAGA_API_PORT", "8000"))
        return cls(
            database_url=e.get("PAYSAGA_DATABASE_URL") or None,
            temporal_address=e.get("PAYSAGA_TEMPORAL_ADDRESS") or f"127.0.0.1:{temporal_port}",
            temporal_namespace=e.get("PAYSAGA_TEMPORAL_NAMESPACE", "default"),
            task_queue=e.get("PAYSAGA_TASK_QUEUE", "paysaga"),
            data_dir=Path(e.get("PAYSAGA_DATA_DIR", ".paysaga")),
            api_port=api_port,
            temporal_port=temporal_port,
            temporal_ui_port=int(e.get("PAYSAGA_TEMPORAL_UI_PORT", "8233")),
            jwt_secret=e.get("PAYSAGA_JWT_SECRET") or None,
            payment_window_seconds=int(e.get("PAYSAGA_PAYMENT_WINDOW_SECONDS", "900")),
            refund_window_seconds=int(e.get("PAYSAGA_REFUND_WINDOW_SECONDS", "1209600")),
            recovery=RecoveryTiming(
                first_phase=float(e.get("PAYSAGA_RETRY_FIRST_PHASE_SECONDS", "300")),
                fast_max=float(e.get("PAYSAGA_RETRY_FAST_MAX_SECONDS", "10")),
                slow_initial=float(e.get("PAYSAGA_RETRY_SLOW_INITIAL_SECONDS", "30")),
                slow_max=float(e.get("PAYSAGA_RETRY_SLOW_MAX_SECONDS", "300")),
            ),
            reconcile_every_seconds=int(e.get("PAYSAGA_RECONCILE_EVERY_SECONDS", "60")),
            unmatched_alert_seconds=int(e.get("PAYSAGA_UNMATCHED_ALERT_SECONDS", "3600")),
            workflow_sandbox=e.get("PAYSAGA_WORKFLOW_SANDBOX", "false").lower()
            in ("1", "true", "yes", "on"),
            smtp_host=e.get("PAYSAGA_SMTP_HOST") or None,
            smtp_port=int(e.get("PAYSAGA_SMTP_PORT", "25")),
            smtp_from=e.get("PAYSAGA_SMTP_FROM") or "tickets@paysaga.localhost",
            organizer_name=e.get("PAYSAGA_ORGANIZER_NAME") or "paysaga",
            log_format="text" if e.get("PAYSAGA_LOG_FORMAT", "json") == "text" else "json",
            worker_metrics_host=e.get("PAYSAGA_WORKER_METRICS_HOST") or "127.0.0.1",
            worker_metrics_port=int(port)
            if (port := e.get("PAYSAGA_WORKER_METRICS_PORT"))
            else None,
            public_url=(e.get("PAYSAGA_PUBLIC_URL") or f"http://127.0.0.1:{api_port}").rstrip("/"),
            env={k: v for k, v in e.items() if k.startswith("PAYSAGA_")},
        )

    def secrets(self) -> tuple[str, ...]:
        """Every configured secret: logs must never carry one (`observability.logs.Redact`)."""
        found = (self.jwt_secret, *Gateways(self.env).secrets())
        return tuple(s for s in found if s)

    def require_database_url(self) -> str:
        if not self.database_url:
            raise SystemExit("PAYSAGA_DATABASE_URL is not set (paysaga dev sets it for you)")
        return self.database_url
