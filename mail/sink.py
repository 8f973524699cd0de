"""A local SMTP server that keeps every mail it receives as a file (`paysaga dev`).

Each message becomes `<dir>/<UTC time>-<n>.eml`, readable with any mail client or a text
editor; the sink prints the path of each as it arrives. Never used in production: there,
PAYSAGA_SMTP_HOST names a real mail server.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class FileSink:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._numbers = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        path = self.directory / f"{stamp}-{next(self._numbers):04d}.eml"
        content = envelope.original_content or b""
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        # Addresses are personal data: the log names only their domains (the file has them).
        domains = ", ".join(sorted({r.rpartition("@")[2] for r in envelope.rcpt_tos}))
        print(f"mail to {len(envelope.rcpt_tos)} at {domains} kept in {path}", flush=True)
        return "250 OK kept"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mail.sink", description=__doc__)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    controller = Controller(FileSink(args.dir), hostname=args.host, port=args.port)
    controller.start()
    print(f"SMTP sink on {args.host}:{args.port}, mail kept in {args.dir}", flush=True)
    stopped = threading.Event()

    def stop(*_: Any) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stopped.wait()
    controller.stop()


if __name__ == "__main__":
    main()
