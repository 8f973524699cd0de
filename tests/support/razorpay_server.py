"""A small Razorpay API for the tests: the calls paysaga makes, in Razorpay's documented wire
format (there is no Razorpay emulator). The official `razorpay` SDK is the client.

Orders (`POST /v1/orders`), an order's payments (`GET /v1/orders/{id}/payments`), a payment
(`GET /v1/payments/{id}`) and refunds (`POST /v1/payments/{id}/refund`, honouring
`X-Refund-Idempotency`), behind HTTP basic auth with the key id and secret; errors as
`{"error": {"code": "BAD_REQUEST_ERROR", "description": ...}}`. `pay(order_id)` is the
customer paying at Razorpay's checkout; `faults` makes the next requests answer 5xx or 429.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class RazorpayApiServer:
    def __init__(self, key_id: str, key_secret: str) -> None:
        self.auth = "Basic " + base64.b64encode(f"{key_id}:{key_secret}".encode()).decode()
        self.orders: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}  # by idempotency key
        self.refund_calls = 0
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
        order = self.orders[order_id]
        payment = {
            "id": "pay_" + secrets.token_hex(7),
            "entity": "payment",
            "amount": order["amount"],
            "currency": order["currency"],
            "status": "captured",
            "order_id": order_id,
            "method": "card",
            "captured": True,
            "amount_refunded": 0,
            "created_at": int(time.time()),
        }
        with self.lock:
            self.payments[payment["id"]] = payment
            order["status"], order["amount_paid"] = "paid", order["amount"]
        return str(payment["id"])

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
                else:
                    self._error(400, "The requested URL was not found on the server.")

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
                    if not failing:
                        payment["amount_refunded"] += amount
                        payment["status"] = "refunded"
                    refund = {
                        "id": "rfnd_" + secrets.token_hex(7),
                        "entity": "refund",
                        "amount": amount,
                        "currency": payment["currency"],
                        "payment_id": payment_id,
                        "status": "failed" if failing else "processed",
                        "created_at": int(time.time()),
                    }
                    api.refunds[key] = refund
                self._answer(200, refund)

        return Handler
