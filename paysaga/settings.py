"""Settings read from the environment (names fixed by CONTRACT.md), through pydantic-settings.

Field `x` is read from `PAYSAGA_X`; an empty value counts as unset. A value that does not fit
raises `SettingsError`, whose one-line message names the variable and what it expects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from domain.payments import RecoveryTiming
from gateways import Gateways

PREFIX = "PAYSAGA_"
MIN_JWT_SECRET_BYTES = 32
# Written by `paysaga dev` beside its data while it runs (see `devstack.write_connection`).
CONNECTION_FILE = "connection.json"

Port = Annotated[int, Field(ge=0, le=65535)]
Seconds = Annotated[int, Field(ge=0)]
Timing = Annotated[float, Field(ge=0)]


class SettingsError(ValueError):
    """A variable whose value Settings cannot use; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_ignore_empty=True, frozen=True, extra="ignore"
    )

    database_url: str | None = None
    temporal_address: str = ""  # unset: 127.0.0.1 on temporal_port (see _derived)
    temporal_namespace: str = "default"
    task_queue: str = "paysaga"
    data_dir: Path = Path(".paysaga")
    api_port: Port = 8000
    temporal_port: Port = 7233
    temporal_ui_port: Port = 8233
    jwt_secret: str | None = None
    payment_window_seconds: Seconds = 900
    # What one customer may hold at checkout (`db.holds`): units awaiting payment at once,
    # and orders placed in any minute.
    max_held_per_customer: Annotated[int, Field(ge=1)] = 20
    orders_per_minute: Annotated[int, Field(ge=1)] | None = None  # unset: no rate limit
    metrics_token: str | None = None  # the API's /metrics then answers only this bearer
    refund_window_seconds: Seconds = 1209600
    # A vendor's time to accept a paid order that needs it; unanswered, it is rejected
    # (`timeout`) and refunded (`db.fulfilment`).
    vendor_accept_seconds: Seconds = 900
    retry_first_phase_seconds: Timing = 300
    retry_fast_max_seconds: Timing = 10
    retry_slow_initial_seconds: Timing = 30
    retry_slow_max_seconds: Timing = 300
    reconcile_every_seconds: Seconds = 60
    unmatched_alert_seconds: Seconds = 3600
    workflow_sandbox: bool = False
    smtp_host: str | None = None
    smtp_port: Port = 25
    smtp_from: str = "tickets@paysaga.localhost"
    organizer_name: str = "paysaga"
    admin_email: str | None = None  # comma-separated: where escalations are mailed
    # The outbox's senders (`activities.mail_senders`): mails in flight at once, tickets
    # rendered at once (0: in a thread), and how long a deferred mail is tried (3 days).
    mail_senders: Annotated[int, Field(ge=1, le=64)] = 4
    mail_render_processes: Annotated[int, Field(ge=0, le=32)] = 2
    mail_give_up_seconds: Annotated[int, Field(ge=1)] = 259200
    log_format: Literal["json", "text"] = "json"
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: Port | None = None  # None: no metrics server (0: a free port)
    public_url: str = ""  # where links in mails point; unset: the API's own base URL
    # Every PAYSAGA_ variable as given: each gateway reads its own (`gateways.registry`).
    _env: dict[str, str] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        given = _GIVEN.get()
        source = os.environ if given is None else given
        self._env = {
            k.upper(): v for k, v in source.items() if k.upper().startswith(PREFIX) and v != ""
        }

    @property
    def env(self) -> Mapping[str, str]:
        return self._env

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        """Defaults that follow other values: the ports the addresses are built from."""
        if isinstance(data, dict):
            data = {
                "temporal_address": f"127.0.0.1:{data.get('temporal_port', 7233)}",
                "public_url": f"http://127.0.0.1:{data.get('api_port', 8000)}",
            } | data
        return data

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        # HS256 with a short key is guessable offline from any one token.
        if value is not None and len(value.encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(f"at least {MIN_JWT_SECRET_BYTES} bytes")
        return value

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("admin_email")
    @classmethod
    def _addresses(cls, value: str | None) -> str | None:
        if value is not None and not all("@" in a.strip() for a in value.split(",")):
            raise ValueError("comma-separated e-mail addresses")
        return value

    @property
    def admins(self) -> tuple[str, ...]:
        """PAYSAGA_ADMIN_EMAIL's addresses; none: escalations are only logged and counted."""
        return tuple(a.strip() for a in (self.admin_email or "").split(",") if a.strip())

    @property
    def recovery(self) -> RecoveryTiming:
        return RecoveryTiming(
            first_phase=self.retry_first_phase_seconds,
            fast_max=self.retry_fast_max_seconds,
            slow_initial=self.retry_slow_initial_seconds,
            slow_max=self.retry_slow_max_seconds,
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # No .env or secrets files: the environment (or what from_env was given) is all.
        return init_settings, _Environment(settings_cls)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, dev_connection: bool = False
    ) -> Settings:
        """Settings from `env` (default: the process environment), and nothing else.

        `dev_connection`: what `env` leaves unset is taken from the connection file a running
        `paysaga dev` keeps in the data dir, so operator commands find it with no exports.
        """
        given = os.environ if env is None else env
        if dev_connection:
            path = _load(cls, given).data_dir / CONNECTION_FILE
            if path.is_file():
                given = _connection_file(path) | {k: v for k, v in given.items() if v != ""}
        return _load(cls, given)

    def secrets(self) -> tuple[str, ...]:
        """Every configured secret: logs must never carry one (`observability.logs.Redact`)."""
        found = (
            self.jwt_secret,
            self.metrics_token,
            self.database_password(),
            *Gateways(self.env).secrets(),
        )
        return tuple(s for s in found if s)

    def database_password(self) -> str | None:
        if not self.database_url:
            return None
        try:
            return make_url(self.database_url).password
        except ArgumentError:
            return None

    def require_database_url(self) -> str:
        if not self.database_url:
            raise SystemExit(
                "PAYSAGA_DATABASE_URL is not set (a running `paysaga dev` provides it, "
                "found through PAYSAGA_DATA_DIR)"
            )
        return self.database_url


# What `_load` has `Settings()` read instead of os.environ, for that one call.
_GIVEN: ContextVar[Mapping[str, str] | None] = ContextVar("paysaga_settings_env", default=None)


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source, reading the mapping `from_env` was given."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        given = _GIVEN.get()
        if given is None:
            return super()._load_env_vars()
        # As the default source: names case-insensitive, an empty value unset.
        return {k.lower(): v for k, v in given.items() if v != ""}


def _load(cls: type[Settings], env: Mapping[str, str]) -> Settings:
    token = _GIVEN.set(env)
    try:
        return cls()
    except ValidationError as exc:
        raise SettingsError("; ".join(_describe(e) for e in exc.errors())) from None
    finally:
        _GIVEN.reset(token)


def _connection_file(path: Path) -> dict[str, str]:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{path}: unreadable ({exc})") from None
    if not isinstance(stored, dict):
        raise SettingsError(f"{path}: expected a JSON object of PAYSAGA_ variables")
    return {str(k): str(v) for k, v in stored.items()}


# What a value must look like, by pydantic error type; the input is echoed only for these
# (never a string field's, which could be a secret).
_EXPECTED = {
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "bool_parsing": "true or false (1/0, yes/no, on/off)",
    "greater_than_equal": "a number >= {ge}",
    "less_than_equal": "a number <= {le}",
    "literal_error": "one of {expected}",
}


def _describe(error: ErrorDetails) -> str:
    name = PREFIX + str(error["loc"][0]).upper() if error["loc"] else "PAYSAGA_*"
    template = _EXPECTED.get(error["type"])
    if error["type"] == "value_error":  # ours: says what it expects, never echoes a secret
        return f"{name}: expected {error.get('ctx', {}).get('error', error['msg'])}"
    if template is None:
        return f"{name}: {error['msg']}"
    expected = template.format(**error.get("ctx", {}))
    return f"{name}: expected {expected}, got {error['input']!r}"
