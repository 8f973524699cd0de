"""A real Stripe emulator (`localstripe`) for the tests, a card paying at it as Stripe.js
does, and `FaultyStripe`: a proxy in front of it that answers 500 or 429 the way Stripe does,
to show what paysaga makes of them.

Stripe saves "the status code and body of the first request made with a given idempotency key
after endpoint execution begins. Retries with the same key return the saved response,
including 500 errors" (https://docs.stripe.com/api/idempotent_requests). localstripe keeps no
such record, so the proxy does: a key that once got a 500 gets it again, with
`Stripe-Should-Retry: false` as Stripe sends on a replay.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import stripe

from paysaga.devstack import free_port

API_KEY = "sk_test_paysaga_localstripe"


def running_localstripe() -> Iterator[str]:
    """localstripe on a free port, for a test module's fixture: `yield from` this."""
    for _ in range(3):  # a port taken between choosing it and binding it: another port
        port = free_port()
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "localstripe"), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        if _answers(base, proc):
            break
        proc.kill()
    else:
        raise RuntimeError("localstripe did not start")
    yield base
    proc.terminate()
    proc.wait(10)


def _answers(base: str, proc: subprocess.Popen[bytes]) -> bool:
    """Until it answers; False if it exited. Its first start in a new virtualenv compiles
    every module it imports, which on a busy CI machine took longer than 10 s: a minute."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/v1/balance", headers={"Authorization": f"Bearer {API_KEY}"})
            return True
        except httpx.TransportError:
            time.sleep(0.1)
    return False


def stripe_client(base: str) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": base})


async def pay_with_card(base: str, intent_id: str, card: str = "4242424242424242") -> str:
    """What Stripe.js does in the browser: a card, attached to the intent, confirmed."""
    client = stripe_client(base)

    def pay() -> str:
        method = client.v1.payment_methods.create(
            {
                "type": "card",
                "card": {"number": card, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
            }
        )
        client.v1.payment_intents.update(intent_id, {"payment_method": method.id})
        try:
            return str(client.v1.payment_intents.confirm(intent_id).status)
        except stripe.CardError:
            return "declined"

    return await asyncio.to_thread(pay)


@dataclass
class Fault:
    """The next `times` POSTs to `path` answer `status`: before localstripe sees them, or
    (`after`) once it has done what they asked, the answer lost."""

    path: str
    status: int = 500
    times: int = 1
    after: bool = False
    retry_after: str | None = None


@dataclass
class Seen:
    method: str
    path: str
    key: str | None
    status: int


@dataclass
class FaultyStripe:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    failed_keys: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    def keys(self, path: str) -> list[tuple[str | None, int]]:
        return [(s.key, s.status) for s in self.seen if s.path == path and s.method == "POST"]

    def _fault(self, method: str, path: str, key: str | None) -> Fault | None:
        with self.lock:
            if key is not None and key in self.failed_keys:
                return Fault(path)  # Stripe's replay of a saved 500
            for fault in self.faults:
                if method == "POST" and path == fault.path and fault.times > 0:
                    fault.times -= 1
                    if fault.status >= 500 and key is not None:
                        self.failed_keys.add(key)
                    return fault
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                path = self.path.split("?")[0]
                key = self.headers.get("Idempotency-Key")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy._fault(self.command, path, key)
                if fault is None or fault.after:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
                    answer = httpx.request(
                        self.command, proxy.upstream + self.path, headers=headers, content=body
                    )
                    status, data = answer.status_code, answer.content
                if fault is not None:
                    status, data = fault.status, b'{"error": {"type": "api_error"}}'
                proxy.seen.append(Seen(self.command, path, key, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if fault is not None and fault.status >= 500:
                    self.send_header("Stripe-Should-Retry", "false")
                if fault is not None and fault.retry_after is not None:
                    self.send_header("Retry-After", fault.retry_after)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _relay

        return Handler
