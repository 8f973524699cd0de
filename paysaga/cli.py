"""The `paysaga` command: dev stack, single components, migrations, tokens, operator tools."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable

from paysaga.settings import Settings, SettingsError

# The dev stack prints its own summary; its children log to PAYSAGA_DATA_DIR/logs.
QUIET = ("dev", "migrate", "token", "admin", "bench")
# Operator commands: what the environment leaves unset comes from a running `paysaga dev`.
DEV_CONNECTION = ("migrate", "token", "admin")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(dev_connection=args.command in DEV_CONNECTION)
    except SettingsError as exc:
        raise SystemExit(f"paysaga: {exc}") from None  # one line on stderr, exit 1
    level = logging.WARNING if args.command in QUIET else logging.INFO
    if args.command in ("api", "worker"):
        from observability.logs import configure_logging

        # PAYSAGA_LOG_FORMAT: JSON lines by default, text in `paysaga dev`.
        configure_logging(settings.log_format, f"paysaga-{args.command}", level, settings.secrets())
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    COMMANDS[args.command](settings, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paysaga", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "dev", help="run the whole stack locally (embedded PostgreSQL, Temporal dev server)"
    )
    api = sub.add_parser("api", help="run the HTTP API against external services")
    api.add_argument("--host", default="127.0.0.1")
    sub.add_parser("worker", help="run the Temporal worker against external services")
    sub.add_parser("migrate", help="apply database migrations")
    token = sub.add_parser("token", help="mint a bearer token with PAYSAGA_JWT_SECRET")
    token.add_argument("sub")
    role = token.add_mutually_exclusive_group()
    role.add_argument("--admin", action="store_true")
    role.add_argument("--vendor", action="store_true", help="SUB is the vendor id")
    token.add_argument(
        "--ttl", type=int, default=24 * 3600, help="seconds until it expires (default a day)"
    )
    bench = sub.add_parser("bench", help="the benchmark suite (writes bench/results/)")
    bench.add_argument("--quick", action="store_true", help="short runs, under 5 minutes")
    bench.add_argument(
        "--drop", type=int, metavar="N", help="a ticket drop: N customers buy within a minute"
    )
    bench.add_argument(
        "--drop-seconds", type=float, metavar="S", help="the drop's arrivals spread over S s"
    )
    bench.add_argument("--vendors", type=int, metavar="N", help="vendor stream latency, N open")
    bench.add_argument("--rate", type=float, help="--vendors: webhooks per second")
    bench.add_argument("--seconds", type=float, help="--vendors: for how long")
    bench.add_argument("--wake", choices=("notify", "poll"), help="--vendors: the follower's wake")
    from paysaga.admin_cli import add_admin_parser

    add_admin_parser(sub)
    return parser


def _dev(settings: Settings, args: argparse.Namespace) -> None:
    from paysaga.devstack import run_dev

    run_dev(settings)


def _api(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from api.app import create_app

    # log_config=None: uvicorn's lines go through our handler (format, context, redaction).
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=settings.api_port,
        log_level="info",
        log_config=None,
    )


def _worker(settings: Settings, args: argparse.Namespace) -> None:
    from worker import main as worker_main

    worker_main(settings)


def _migrate(settings: Settings, args: argparse.Namespace) -> None:
    from db.migrate import upgrade

    upgrade(settings.require_database_url())


def _bench(settings: Settings, args: argparse.Namespace) -> None:
    from bench.run import main as bench_main

    passed = []
    for name in ("drop", "drop_seconds", "vendors", "rate", "seconds", "wake"):
        if getattr(args, name) is not None:
            passed += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    bench_main(["--quick"] * args.quick + passed)


def _admin(settings: Settings, args: argparse.Namespace) -> None:
    from paysaga.admin_cli import run_admin

    code = asyncio.run(run_admin(settings, args))
    # Exit at once: letting the interpreter finalise under the Temporal client's runtime
    # threads can abort the process (SIGABRT) after the work is done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _token(settings: Settings, args: argparse.Namespace) -> None:
    from api.auth import make_token

    if not settings.jwt_secret:
        raise SystemExit("PAYSAGA_JWT_SECRET is not set (a running `paysaga dev` provides it)")
    try:
        print(
            make_token(
                settings.jwt_secret, args.sub, admin=args.admin, vendor=args.vendor, ttl=args.ttl
            )
        )
    except ValueError as exc:  # a reserved actor prefix, or not a vendor id
        raise SystemExit(f"paysaga: {exc}") from exc


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], None]] = {
    "dev": _dev,
    "api": _api,
    "worker": _worker,
    "migrate": _migrate,
    "bench": _bench,
    "admin": _admin,
    "token": _token,
}


if __name__ == "__main__":
    main()
