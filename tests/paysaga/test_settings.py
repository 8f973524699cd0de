"""`Settings`: every PAYSAGA_ variable, its default, what a bad value says, and the connection
file a running `paysaga dev` leaves for the CLI. Pure: no services."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from domain.payments import RecoveryTiming
from gateways import Gateways
from paysaga.devstack import write_connection
from paysaga.settings import CONNECTION_FILE, Settings, SettingsError

# Every variable Settings reads: the value set, the attribute, what it holds then.
EVERY: dict[str, tuple[str, str, object]] = {
    "PAYSAGA_DATABASE_URL": ("postgresql+asyncpg://u@db/x", "database_url", None),
    "PAYSAGA_TEMPORAL_ADDRESS": ("temporal:7233", "temporal_address", None),
    "PAYSAGA_TEMPORAL_NAMESPACE": ("ns", "temporal_namespace", None),
    "PAYSAGA_TASK_QUEUE": ("q", "task_queue", None),
    "PAYSAGA_DATA_DIR": ("/var/lib/paysaga", "data_dir", Path("/var/lib/paysaga")),
    "PAYSAGA_API_PORT": ("8100", "api_port", 8100),
    "PAYSAGA_TEMPORAL_PORT": ("7300", "temporal_port", 7300),
    "PAYSAGA_TEMPORAL_UI_PORT": ("8300", "temporal_ui_port", 8300),
    "PAYSAGA_JWT_SECRET": ("j" * 32, "jwt_secret", None),
    "PAYSAGA_PAYMENT_WINDOW_SECONDS": ("60", "payment_window_seconds", 60),
    "PAYSAGA_REFUND_WINDOW_SECONDS": ("0", "refund_window_seconds", 0),
    "PAYSAGA_VENDOR_ACCEPT_SECONDS": ("120", "vendor_accept_seconds", 120),
    "PAYSAGA_MAX_HELD_PER_CUSTOMER": ("7", "max_held_per_customer", 7),
    "PAYSAGA_ORDERS_PER_MINUTE": ("3", "orders_per_minute", 3),
    "PAYSAGA_METRICS_TOKEN": ("scrape-token", "metrics_token", None),
    "PAYSAGA_RETRY_FIRST_PHASE_SECONDS": ("8", "retry_first_phase_seconds", 8.0),
    "PAYSAGA_RETRY_FAST_MAX_SECONDS": ("0.5", "retry_fast_max_seconds", 0.5),
    "PAYSAGA_RETRY_SLOW_INITIAL_SECONDS": ("2", "retry_slow_initial_seconds", 2.0),
    "PAYSAGA_RETRY_SLOW_MAX_SECONDS": ("4", "retry_slow_max_seconds", 4.0),
    "PAYSAGA_RECONCILE_EVERY_SECONDS": ("5", "reconcile_every_seconds", 5),
    "PAYSAGA_UNMATCHED_ALERT_SECONDS": ("7", "unmatched_alert_seconds", 7),
    "PAYSAGA_WORKFLOW_SANDBOX": ("on", "workflow_sandbox", True),
    "PAYSAGA_SMTP_HOST": ("mail.local", "smtp_host", None),
    "PAYSAGA_SMTP_PORT": ("2525", "smtp_port", 2525),
    "PAYSAGA_SMTP_FROM": ("shop@example.org", "smtp_from", None),
    "PAYSAGA_ORGANIZER_NAME": ("PyCon", "organizer_name", None),
    "PAYSAGA_ADMIN_EMAIL": ("ops@example.org,cfo@example.org", "admin_email", None),
    "PAYSAGA_MAIL_SENDERS": ("8", "mail_senders", 8),
    "PAYSAGA_MAIL_RENDER_PROCESSES": ("0", "mail_render_processes", 0),
    "PAYSAGA_MAIL_GIVE_UP_SECONDS": ("60", "mail_give_up_seconds", 60),
    "PAYSAGA_LOG_FORMAT": ("text", "log_format", None),
    "PAYSAGA_WORKER_METRICS_HOST": ("127.0.0.2", "worker_metrics_host", None),
    "PAYSAGA_WORKER_METRICS_PORT": ("0", "worker_metrics_port", 0),
    "PAYSAGA_PUBLIC_URL": ("https://tickets.example.org/", "public_url", None),
}


def expected(name: str) -> object:
    raw, _, held = EVERY[name]
    if name == "PAYSAGA_PUBLIC_URL":
        return "https://tickets.example.org"  # no trailing slash: links append paths
    return raw if held is None else held


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.database_url is None and s.jwt_secret is None
    assert (s.temporal_address, s.temporal_namespace, s.task_queue) == (
        "127.0.0.1:7233",
        "default",
        "paysaga",
    )
    assert s.data_dir == Path(".paysaga")
    assert (s.api_port, s.temporal_port, s.temporal_ui_port) == (8000, 7233, 8233)
    assert s.env == {}
    assert (s.payment_window_seconds, s.refund_window_seconds) == (900, 1209600)
    assert (s.max_held_per_customer, s.orders_per_minute, s.metrics_token) == (20, None, None)
    assert s.recovery == RecoveryTiming(
        first_phase=300.0, fast_max=10.0, slow_initial=30.0, slow_max=300.0
    )
    assert (s.reconcile_every_seconds, s.unmatched_alert_seconds) == (60, 3600)
    assert s.workflow_sandbox is False
    assert (s.smtp_host, s.smtp_port, s.smtp_from) == (None, 25, "tickets@paysaga.localhost")
    assert s.organizer_name == "paysaga" and s.log_format == "json"
    assert (s.worker_metrics_host, s.worker_metrics_port) == ("127.0.0.1", None)
    assert s.public_url == "http://127.0.0.1:8000"
    assert s.secrets() == ()


def test_every_variable_is_read() -> None:
    read = {"PAYSAGA_" + name.upper() for name in Settings.model_fields}
    assert read == set(EVERY), "a variable Settings reads is missing from EVERY, or vice versa"
    s = Settings.from_env({name: raw for name, (raw, _, _) in EVERY.items()})
    for name, (_, attribute, _) in EVERY.items():
        assert getattr(s, attribute) == expected(name), name
    assert s.recovery == RecoveryTiming(first_phase=8, fast_max=0.5, slow_initial=2, slow_max=4)
    assert s.secrets() == ("j" * 32, "scrape-token")


# Each gateway reads its own settings (`gateways/<name>/`) from what Settings was given.
GATEWAY_ENV = {
    "PAYSAGA_RAZORPAY_WEBHOOK_SECRETS": "r1, r2",
    "PAYSAGA_STRIPE_WEBHOOK_SECRETS": "whsec_a",
    "PAYSAGA_STANDARD_WEBHOOK_SECRETS": "a,,b,",
    "PAYSAGA_RAZORPAY_KEY_ID": "rzp_test_1",
    "PAYSAGA_RAZORPAY_KEY_SECRET": "rks",
    "PAYSAGA_STRIPE_API_KEY": "sk_live_1",
    "PAYSAGA_STRIPE_API_BASE": "http://127.0.0.1:8420",
    "PAYSAGA_RAZORPAY_API_BASE": "http://127.0.0.1:8421",
}


def test_gateway_settings_reach_their_gateways() -> None:
    jwt_secret = "j" * 32
    given = {"PAYSAGA_JWT_SECRET": jwt_secret, "paysaga_task_queue": "q", **GATEWAY_ENV}
    s = Settings.from_env(given)
    assert s.env == {"PAYSAGA_JWT_SECRET": jwt_secret, "PAYSAGA_TASK_QUEUE": "q", **GATEWAY_ENV}
    gateways = Gateways(s.env)
    assert gateways["razorpay"].webhooks.secrets == ("r1", "r2")
    assert gateways["stripe"].webhooks.secrets == ("whsec_a",)
    assert gateways["standard"].webhooks.secrets == ("a", "b")
    assert gateways["stripe"].webhooks.livemode is True  # an sk_live_ key
    assert gateways["razorpay"].api is not None and gateways["stripe"].api is not None
    assert set(s.secrets()) == {jwt_secret, "r1", "r2", "whsec_a", "a", "b", "rks", "sk_live_1"}
    offline = Gateways(Settings.from_env({}).env)
    assert all(gateway.api is None for gateway in offline)


def test_each_variable_alone() -> None:
    """No variable is read under another's name, or leaks into another attribute."""
    default = Settings.from_env({})
    derived = {"PAYSAGA_TEMPORAL_PORT": "temporal_address", "PAYSAGA_API_PORT": "public_url"}
    for name, (raw, attribute, _) in EVERY.items():
        s = Settings.from_env({name: raw})
        assert getattr(s, attribute) == expected(name), name
        changed = {
            field for field in Settings.model_fields if getattr(s, field) != getattr(default, field)
        }
        assert changed == {attribute} | ({derived[name]} if name in derived else set()), name


def test_derived_values() -> None:
    s = Settings.from_env({"PAYSAGA_TEMPORAL_PORT": "7300", "PAYSAGA_API_PORT": "8100"})
    assert s.temporal_address == "127.0.0.1:7300"
    assert s.public_url == "http://127.0.0.1:8100"
    s = Settings.from_env({"PAYSAGA_TEMPORAL_PORT": "7300", "PAYSAGA_TEMPORAL_ADDRESS": "t:1"})
    assert s.temporal_address == "t:1"
    for truthy in ("1", "true", "TRUE", "yes", "on"):
        assert Settings.from_env({"PAYSAGA_WORKFLOW_SANDBOX": truthy}).workflow_sandbox
    for falsy in ("0", "false", "no", "off"):
        assert not Settings.from_env({"PAYSAGA_WORKFLOW_SANDBOX": falsy}).workflow_sandbox


def test_an_empty_value_is_unset() -> None:
    assert Settings.from_env(dict.fromkeys(EVERY, "")) == Settings.from_env({})


def test_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYSAGA_TASK_QUEUE", "from-env")
    assert Settings.from_env().task_queue == "from-env"
    assert Settings().task_queue == "from-env"
    # A mapping given is all there is.
    assert Settings.from_env({}).task_queue == "paysaga"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PAYSAGA_API_PORT", "abc", "PAYSAGA_API_PORT: expected an integer, got 'abc'"),
        ("PAYSAGA_TEMPORAL_PORT", "70000", "PAYSAGA_TEMPORAL_PORT: expected a number <= 65535"),
        (
            "PAYSAGA_WORKER_METRICS_PORT",
            "-1",
            "PAYSAGA_WORKER_METRICS_PORT: expected a number >= 0",
        ),
        (
            "PAYSAGA_PAYMENT_WINDOW_SECONDS",
            "1.5",
            "PAYSAGA_PAYMENT_WINDOW_SECONDS: expected an integer",
        ),
        (
            "PAYSAGA_RETRY_FAST_MAX_SECONDS",
            "soon",
            "PAYSAGA_RETRY_FAST_MAX_SECONDS: expected a number",
        ),
        ("PAYSAGA_WORKFLOW_SANDBOX", "maybe", "PAYSAGA_WORKFLOW_SANDBOX: expected true or false"),
        ("PAYSAGA_LOG_FORMAT", "xml", "PAYSAGA_LOG_FORMAT: expected one of 'json' or 'text'"),
        ("PAYSAGA_JWT_SECRET", "too-short", "PAYSAGA_JWT_SECRET: expected at least 32 bytes"),
        (
            "PAYSAGA_MAX_HELD_PER_CUSTOMER",
            "0",
            "PAYSAGA_MAX_HELD_PER_CUSTOMER: expected a number >= 1",
        ),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_every_bad_value_is_named_at_once() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"PAYSAGA_API_PORT": "x", "PAYSAGA_SMTP_PORT": "y"})
    assert "PAYSAGA_API_PORT:" in str(raised.value) and "PAYSAGA_SMTP_PORT:" in str(raised.value)


def write_file(data_dir: Path, values: dict[str, str]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / CONNECTION_FILE).write_text(json.dumps(values))


def test_connection_file_fills_what_the_environment_leaves_unset(tmp_path: Path) -> None:
    write_file(
        tmp_path,
        {
            "PAYSAGA_DATABASE_URL": "postgresql+asyncpg://dev@/paysaga?host=/x",
            "PAYSAGA_TEMPORAL_ADDRESS": "127.0.0.1:7300",
            "PAYSAGA_TASK_QUEUE": "dev-queue",
            "PAYSAGA_JWT_SECRET": "dev-jwt-" + "x" * 32,
        },
    )
    env = {"PAYSAGA_DATA_DIR": str(tmp_path), "PAYSAGA_TASK_QUEUE": "mine"}
    s = Settings.from_env(env, dev_connection=True)
    assert s.database_url == "postgresql+asyncpg://dev@/paysaga?host=/x"
    assert s.temporal_address == "127.0.0.1:7300" and s.jwt_secret == "dev-jwt-" + "x" * 32
    assert s.task_queue == "mine"  # the environment wins
    # An empty variable is unset: the file's value counts.
    s = Settings.from_env(env | {"PAYSAGA_JWT_SECRET": ""}, dev_connection=True)
    assert s.jwt_secret == "dev-jwt-" + "x" * 32
    # Only when asked (the dev stack's own children and services never read it).
    assert Settings.from_env(env).database_url is None


def test_connection_file_is_looked_for_in_the_default_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_file(tmp_path / ".paysaga", {"PAYSAGA_DATABASE_URL": "postgresql+asyncpg://dev@/x"})
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({}, dev_connection=True).database_url == "postgresql+asyncpg://dev@/x"
    monkeypatch.chdir(tmp_path / ".paysaga")
    assert Settings.from_env({}, dev_connection=True).database_url is None  # no file: unset


def test_a_bad_connection_file_is_named(tmp_path: Path) -> None:
    (tmp_path / CONNECTION_FILE).write_text("{not json")
    with pytest.raises(SettingsError, match=CONNECTION_FILE):
        Settings.from_env({"PAYSAGA_DATA_DIR": str(tmp_path)}, dev_connection=True)
    write_file(tmp_path, {"PAYSAGA_API_PORT": "abc"})
    with pytest.raises(SettingsError, match="PAYSAGA_API_PORT: expected an integer"):
        Settings.from_env({"PAYSAGA_DATA_DIR": str(tmp_path)}, dev_connection=True)


def test_what_dev_writes_is_what_the_cli_reads(tmp_path: Path) -> None:
    # A data dir whose path JSON must escape: the socket lives under it.
    data_dir = tmp_path / "it's $HOME"
    data_dir.mkdir()
    url = f"postgresql+asyncpg://postgres@/paysaga?host={data_dir / 'postgres'}&port=5432"
    env = {
        "PAYSAGA_DATABASE_URL": url,
        "PAYSAGA_TEMPORAL_ADDRESS": "127.0.0.1:7300",
        "PAYSAGA_JWT_SECRET": "j" * 64,
        "PAYSAGA_RAZORPAY_WEBHOOK_SECRETS": "r",
        "PAYSAGA_STRIPE_WEBHOOK_SECRETS": "whsec_s",
        "PAYSAGA_STANDARD_WEBHOOK_SECRETS": "whsec_a+b/c==",
    }
    dev = Settings.from_env(env | {"PAYSAGA_API_PORT": "8100", "PAYSAGA_TASK_QUEUE": "q"})
    path = write_connection(data_dir, env, dev)
    assert path == data_dir / CONNECTION_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it carries the secrets
    cli = Settings.from_env({"PAYSAGA_DATA_DIR": str(data_dir)}, dev_connection=True)
    assert cli.database_url == url and cli.temporal_address == "127.0.0.1:7300"
    assert (cli.task_queue, cli.api_port, cli.public_url) == ("q", 8100, "http://127.0.0.1:8100")
    assert cli.secrets() == dev.secrets() == ("j" * 64, "r", "whsec_s", "whsec_a+b/c==")


def paysaga(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PAYSAGA_")}
    return subprocess.run(
        [sys.executable, "-m", "paysaga.cli", *args],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_answers_a_bad_value_in_one_line(tmp_path: Path) -> None:
    done = paysaga(["admin", "cases"], {"PAYSAGA_API_PORT": "abc"})
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "paysaga: PAYSAGA_API_PORT: expected an integer, got 'abc'\n"


def test_the_cli_mints_a_token_with_the_dev_secret(tmp_path: Path) -> None:
    write_file(tmp_path, {"PAYSAGA_JWT_SECRET": "s" * 64})
    done = paysaga(["token", "alice"], {"PAYSAGA_DATA_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(done.stdout.strip(), "s" * 64, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    missing = paysaga(["token", "alice"], {"PAYSAGA_DATA_DIR": str(tmp_path / "none")})
    assert missing.returncode == 1 and "PAYSAGA_JWT_SECRET is not set" in missing.stderr
