"""A small Razorpay API for the tests: the calls paysaga makes, in Razorpay's documented wire
format (there is no Razorpay emulator). The official `razorpay` SDK is the client.

Orders (`POST /v1/orders`), an order's payments (`GET /v1/orders/{id}/payments`), a payment
(`GET /v1/payments/{id}`), captures (`POST /v1/payments/{id}/capture`: an authorized payment
becomes captured; one captured already answers 400 "This payment has already been captured")
and refunds (`POST /v1/payments/{id}/refund`, honouring `X-Refund-Idempotency`), behind HTTP
basic auth with the key id and secret; errors as
`{"error": {"code": "BAD_REQUEST_ERROR", "description": ...}}`. `pay(order_id)` is the
customer paying at Razorpay's checkout (captured at once, as with automatic capture),
`authorize(order_id)` paying on an account with manual capture (authorized, to be captured);
`refuse_captures` refuses the next captures; `faults` makes the next requests answer 5xx or 429.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class RazorpayApiServer:
    def __init__(self, key_id: str, key_secret: str) -> None:
        self.auth = "Basic " + base64.b64encode(f"{key_id}:{key_secret}".encode()).decode()
        self.orders: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}  # by idempotency key
        self.refund_calls = 0
        self.capture_calls: list[str] = []  # the payment id of each capture request
        self.refuse_captures = 0  # the next captures are refused (400), the payment kept
        self.refuse_capture_of: set[str] = set()  # these payments' next capture is refused
        self.capture_delay = 0.0  # seconds a capture takes before it is done and answered
        self.refunds_pending = False  # refunds are answered `pending` (the webhook follows)
        self.fail_refunds = 0  # the next refunds created end `failed` (the bank refused)
        # The next requests whose path starts so answer this status instead (after doing what
        # they asked, if `after`): (path prefix, status, Retry-After, after).
        self.faults: list[tuple[str, int, str | None, bool]] = []
        self.requests: list[tuple[str, str, int]] = []  # method, path, status answered
        self.refund_keys: list[str | None] = []  # X-Refund-Idempotency of each refund request
        self.lock = threading.Lock()
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    def pay(self, order_id: str) -> str:
        """The customer pays the order at Razorpay: a captured payment."""
        return self.add_payment(order_id, captured=True)

    def authorize(self, order_id: str) -> str:
        """The customer pays the order on an account with manual capture: authorized."""
        return self.add_payment(order_id, captured=False)

    def add_payment(
        self,
        order_id: str | None,
        captured: bool,
        amount: int | None = None,
        currency: str | None = None,
        payment_id: str | None = None,
    ) -> str:
        """A payment as Razorpay keeps it; of the order's amount unless told otherwise. No
        order (None): a payment whose webhook names an order Razorpay does not list."""
        order = self.orders.get(order_id) if order_id else None
        pid = payment_id or "pay_" + secrets.token_hex(7)
        payment: dict[str, Any] = {
            "id": pid,
            "entity": "payment",
            "amount": amount if amount is not None else order["amount"] if order else 0,
            "currency": currency or (order["currency"] if order else "INR"),
            "status": "captured" if captured else "authorized",
            "order_id": order_id,
            "method": "card",
            "captured": captured,
            "amount_refunded": 0,
            "created_at": int(time.time()),
        }
        with self.lock:
            self.payments[pid] = payment
            if order is not None and captured:
                order["status"], order["amount_paid"] = "paid", order["amount"]
            elif order is not None:
                order["status"] = "attempted"
        return pid

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _fault(self) -> tuple[int, str | None, bool] | None:
                with api.lock:
                    for n, (prefix, status, wait, after) in enumerate(api.faults):
                        if self.path.startswith(prefix):
                            del api.faults[n]
                            return status, wait, after
                return None

            def _failing(self, fault: tuple[int, str | None, bool]) -> None:
                status, wait, _ = fault
                data = b"<html>upstream failed</html>" if status >= 500 else b'{"error": {}}'
                api.requests.append((self.command, self.path, status))
                self.send_response(status)
                if wait is not None:
                    self.send_header("Retry-After", wait)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                fault = getattr(self, "fault", None)
                if fault is not None and fault[2]:  # done, and the answer lost
                    self._failing(fault)
                    return
                api.requests.append((self.command, self.path, status))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, description: str) -> None:
                code = "BAD_REQUEST_ERROR" if status < 500 else "SERVER_ERROR"
                self._answer(status, {"error": {"code": code, "description": description}})

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") != api.auth:
                    self._error(401, "The api key provided is invalid")
                    return False
                return True

            def _body(self) -> dict[str, Any]:
                body: dict[str, Any] = json.loads(self._body_bytes or b"{}")
                return body

            def _faulted(self) -> bool:
                """Answers a fault that comes before the work; keeps one that comes after."""
                if self.command == "POST":
                    self._body_bytes = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.fault = self._fault()
                if self.fault is not None and not self.fault[2]:
                    self._failing(self.fault)
                    return True
                return False

            def do_GET(self) -> None:
                if self._faulted() or not self._authorised():
                    return
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[:2] == ["v1", "orders"] and len(parts) == 4 and parts[3] == "payments":
                    items = [p for p in api.payments.values() if p["order_id"] == parts[2]]
                    self._answer(200, {"entity": "collection", "count": len(items), "items": items})
                elif parts[:2] == ["v1", "payments"] and len(parts) == 3:
                    found = api.payments.get(parts[2])
                    if found is None:
                        self._error(400, "The id provided does not exist")
                    else:
                        self._answer(200, found)
                else:
                    self._error(400, "The requested URL was not found on the server.")

            def do_POST(self) -> None:
                if self._faulted() or not self._authorised():
                    return
                parts = self.path.strip("/").split("/")
                body = self._body()
                if parts == ["v1", "orders"]:
                    amount, currency = body.get("amount"), body.get("currency")
                    if not isinstance(amount, int) or amount < 100 or not currency:
                        self._error(400, "The amount must be atleast INR 1.00")
                        return
                    order = {
                        "id": "order_" + secrets.token_hex(7),
                        "entity": "order",
                        "amount": amount,
                        "amount_paid": 0,
                        "amount_due": amount,
                        "currency": currency,
                        "receipt": body.get("receipt"),
                        "status": "created",
                        "created_at": int(time.time()),
                    }
                    api.orders[order["id"]] = order
                    self._answer(200, order)
                elif parts[:2] == ["v1", "payments"] and len(parts) == 4 and parts[3] == "refund":
                    self._refund(parts[2], body)
                elif parts[:2] == ["v1", "payments"] and len(parts) == 4 and parts[3] == "capture":
                    self._capture(parts[2], body)
                else:
                    self._error(400, "The requested URL was not found on the server.")

            def _capture(self, payment_id: str, body: dict[str, Any]) -> None:
                """Razorpay's rules: the whole authorized amount, in its currency, once."""
                api.capture_calls.append(payment_id)
                time.sleep(api.capture_delay)
                with api.lock:
                    payment = api.payments.get(payment_id)
                    if payment is None:
                        self._error(400, "The id provided does not exist")
                        return
                    if payment["status"] == "captured" or payment["status"] == "refunded":
                        self._error(400, "This payment has already been captured")
                        return
                    if api.refuse_captures > 0 or payment_id in api.refuse_capture_of:
                        api.refuse_captures -= api.refuse_captures > 0
                        api.refuse_capture_of.discard(payment_id)
                        self._error(400, "Payment capture failed: the authorization has expired")
                        return
                    if payment["status"] != "authorized":
                        self._error(400, "Only payments which have been authorized can be captured")
                        return
                    if body.get("amount") != payment["amount"]:
                        self._error(400, "Capture amount must be equal to the amount authorized")
                        return
                    if str(body.get("currency", "")).upper() != payment["currency"]:
                        self._error(400, "The currency should be the same as the payment's")
                        return
                    payment["status"], payment["captured"] = "captured", True
                    order = api.orders.get(payment["order_id"] or "")
                    if order is not None:
                        order["status"], order["amount_paid"] = "paid", order["amount"]
                self._answer(200, payment)

            def _refund(self, payment_id: str, body: dict[str, Any]) -> None:
                api.refund_keys.append(self.headers.get("X-Refund-Idempotency"))
                key = self.headers.get("X-Refund-Idempotency") or secrets.token_hex(8)
                with api.lock:
                    api.refund_calls += 1
                    if key in api.refunds:  # the same request again: the same refund
                        self._answer(200, api.refunds[key])
                        return
                    payment = api.payments.get(payment_id)
                    if payment is None:
                        self._error(400, "The id provided does not exist")
                        return
                    amount = body.get("amount", payment["amount"])
                    if amount > payment["amount"] - payment["amount_refunded"]:
                        self._error(
                            400, "The refund amount provided is greater than amount captured"
                        )
                        return
                    failing = api.fail_refunds > 0
                    api.fail_refunds -= failing
                    if not failing and not api.refunds_pending:
                        payment["amount_refunded"] += amount
                        payment["status"] = "refunded"
                    refund = {
                        "id": "rfnd_" + secrets.token_hex(7),
                        "entity": "refund",
                        "amount": amount,
                        "currency": payment["currency"],
                        "payment_id": payment_id,
                        "status": "failed"
                        if failing
                        else "pending"
                        if api.refunds_pending
                        else "processed",
                        "created_at": int(time.time()),
                    }
                    api.refunds[key] = refund
                self._answer(200, refund)

        return Handler


def running_razorpay(key_id: str, key_secret: str) -> Iterator[RazorpayApiServer]:
    """A module's server (`yield from` it in a fixture), closed after."""
    server = RazorpayApiServer(key_id, key_secret)
    try:
        yield server
    finally:
        server.close()
