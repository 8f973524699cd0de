"""An adversarial corpus against the three webhook routes, as an attacker (or a broken
gateway) would send it. Every case asserts its status, that no order, payment, case or
workflow changed, and for each bad signature that it was counted as a security event.

Signatures are made as each gateway documents them (plain HMAC-SHA256; the official SDK
helpers cannot sign bodies that are not UTF-8, which some cases need).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import func, select

from db.models import Order, Payment, ReconciliationCase, SecurityEvent
from domain.payments import confirmation_workflow_id
from tests.support.signing import (
    Headers,
    razorpay_payment_event,
    sign,
    standard_succeeded_event,
    stripe_succeeded_event,
)
from tests.support.stack import Stack

RETIRED = {
    "razorpay": "rzp_webhook_secret_retired",
    "stripe": "whsec_test_stripe_retired",
    "standard": "whsec_" + base64.b64encode(b"standard-webhooks-retired-key-32").decode(),
}
SIGNATURE_HEADER = {
    "razorpay": "X-Razorpay-Signature",
    "stripe": "Stripe-Signature",
    "standard": "webhook-signature",
}


def event_for(provider: str, order: dict[str, Any], **override: Any) -> dict[str, Any]:
    """A valid success event for `order`, with fields replaced (amount, currency, ids)."""
    intent = override.get("intent", order["payment"]["intent_id"])
    amount = override.get("amount", order["amount"])
    currency = override.get("currency", order["currency"])
    tx = override.get("tx", f"tx_{uuid.uuid4().hex[:12]}")
    if provider == "razorpay":
        event = razorpay_payment_event(intent, tx, amount, currency)
    elif provider == "stripe":
        event = stripe_succeeded_event(intent, amount, currency)
        if "tx" in override:
            event["data"]["object"]["id"] = tx
    else:
        event = standard_succeeded_event(intent, tx, amount, currency)
    if "type" in override:
        key = "event" if provider == "razorpay" else "type"
        event[key] = override["type"]
    return event


def dumps(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


@dataclass
class Case:
    name: str
    status: int
    body: bytes
    headers: Headers
    method: str = "POST"
    security_event: bool = False
    chunked: bool = False
    content_type: str = "application/json"
    extra: dict[str, Any] = field(default_factory=dict)


def corpus(provider: str, order: dict[str, Any]) -> list[Case]:
    valid = dumps(event_for(provider, order))
    good = sign(provider, valid)
    other = "stripe" if provider != "stripe" else "razorpay"
    cases = [
        Case("no signature headers", 401, valid, [], security_event=True),
        Case("empty signature header", 401, valid, [(h, "") for h, _ in good], security_event=True),
        Case(
            "malformed signature",
            401,
            valid,
            [(h, "garbage,=,v1") for h, _ in good],
            security_event=True,
        ),
        Case(
            "duplicated signature header, first bad",
            401,
            valid,
            [(SIGNATURE_HEADER[provider], "v1,AAAA"), *good],
            security_event=True,
        ),
        Case("a flipped body byte", 401, valid.replace(b"{", b"[", 1), good, security_event=True),
        Case(
            "re-serialised JSON",
            401,
            json.dumps(json.loads(valid), indent=2).encode(),
            good,
            security_event=True,
        ),
        Case(
            "a retired secret",
            401,
            valid,
            sign(provider, valid, secret=RETIRED[provider]),
            security_event=True,
        ),
        Case(f"{other}'s scheme", 401, valid, sign(other, valid), security_event=True),
        Case("wrong content type", 415, valid, good, content_type="text/plain"),
        Case("no content type", 415, valid, good, content_type=""),
        Case("over 256 KiB", 413, b" " * (256 * 1024 + 1), good),
        Case("over 256 KiB, chunked", 413, b" " * (256 * 1024 + 1), good, chunked=True),
        Case("GET", 405, b"", good, method="GET"),
        Case("PUT", 405, valid, good, method="PUT"),
        Case("DELETE", 405, b"", good, method="DELETE"),
    ]
    if provider != "razorpay":
        for label, stamp in (
            ("a 300-digit timestamp", "9" * 300),
            ("a superscript-digit timestamp", "\u00b2"),
            ("an Arabic-Indic-digit timestamp", "\u0661\u0662\u0663"),
            ("a negative timestamp", "-1"),
            ("a timestamp 6 minutes old", str(int(time.time()) - 360)),
            ("a timestamp 6 minutes ahead", str(int(time.time()) + 360)),
        ):
            headers = sign(provider, valid, timestamp=stamp)
            cases.append(Case(label, 401, valid, headers, security_event=True))

    def signed(label: str, body: bytes, status: int = 400) -> None:
        cases.append(Case(label, status, body, sign(provider, body), security_event=status == 401))

    def field_case(label: str, **override: Any) -> None:
        signed(label, dumps(event_for(provider, order, **override)))

    # Bodies a library that verifies over text cannot check: a bad signature for Stripe and
    # Standard Webhooks, a malformed body behind a valid one for Razorpay's raw HMAC.
    not_utf8 = 400 if provider == "razorpay" else 401
    signed("invalid UTF-8", b'{"a": "\xff"}', not_utf8)
    signed("UTF-16", json.dumps(json.loads(valid)).encode("utf-16"), not_utf8)
    signed("a byte order mark", b"\xef\xbb\xbf" + valid)
    signed(
        "a duplicate key",
        valid[:-1] + b', "entity": "other"}'
        if provider == "razorpay"
        else valid[:-1] + b', "type": "x"}',
    )
    # Raw JSON tokens where the amount goes (json.dumps cannot write most of them).
    placeholder = dumps(event_for(provider, order, amount="__AMOUNT__"))
    for label, token in (
        ("NaN", b"NaN"),
        ("Infinity", b"Infinity"),
        ("1e400", b"1e400"),
        ("a 5,000-digit integer", b"9" * 5000),
    ):
        signed(f"amount {label}", placeholder.replace(b'"__AMOUNT__"', token))
    signed("nesting 50,000 deep", b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")
    signed("an array", b"[]")
    signed("a string", b'"payment.captured"')
    signed("empty", b"")
    for where in ("tx", "intent"):
        field_case(f"NUL byte in the {where} id", **{where: "pay_\u0000x"})
        field_case(f"lone surrogate in the {where} id", **{where: "pay_\ud800"})
        field_case(f"newline in the {where} id", **{where: "pay_x\n"})
        field_case(f"overlong {where} id", **{where: "pay_" + "x" * 300})
        field_case(f"empty {where} id", **{where: ""})
        field_case(f"numeric {where} id", **{where: 12345})
    for label, amount in (
        ("a float", 499.5),
        ("a whole float", 49900.0),
        ("a boolean", True),
        ("a string", "49900"),
        ("negative", -49900),
        ("beyond BIGINT", 2**63),
        ("null", None),
    ):
        field_case(f"amount as {label}", amount=amount)
    for label, currency in (
        ("with a trailing newline", "INR\n"),
        ("non-ASCII", "\u00dfd"),
        ("of 2 letters", "IN"),
        ("of 4 letters", "INRR"),
        ("as a number", 356),
        ("full-width", "\uff29\uff2e\uff32"),
    ):
        field_case(f"currency {label}", currency=currency)
    # Look-alike Unicode (a Cyrillic ie, U+0435) is not the event: a valid event we do not act on.
    lookalike = (
        "payment.captur\u0435d"
        if provider == "razorpay"
        else ("payment_intent.succe\u0435ded" if provider == "stripe" else "payment.succe\u0435ded")
    )
    signed("a look-alike event type", dumps(event_for(provider, order, type=lookalike)), 200)
    return cases


async def snapshot(stack: Stack) -> dict[str, Any]:
    async with stack.sessions() as s:
        orders = sorted((str(o.id), o.status) for o in await s.scalars(select(Order)))
        payments = sorted(
            (p.intent_id, p.status, p.transaction_id or "")
            for p in await s.scalars(select(Payment))
        )
        cases = await s.scalar(select(func.count()).select_from(ReconciliationCase))
    query = f'TaskQueue = "{stack.task_queue}" AND WorkflowType = "ConfirmPayment"'
    workflows = (await stack.client.count_workflows(query)).count
    return {"orders": orders, "payments": payments, "cases": cases, "workflows": workflows}


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 16 * 1024):
        yield body[i : i + 16 * 1024]


async def send(stack: Stack, provider: str, case: Case) -> int:
    headers = list(case.headers)
    if case.content_type:
        headers.append(("Content-Type", case.content_type))
    # Raw bytes on the wire (a server decodes them as latin-1), so non-ASCII can be sent.
    raw = [(name.encode(), value.encode("utf-8")) for name, value in headers]
    content: Any = _chunks(case.body) if case.chunked else case.body
    response = await stack.http.request(
        case.method, f"/webhooks/{provider}", content=content, headers=raw
    )
    if response.status_code != 405:
        assert "detail" in response.json() or "result" in response.json(), response.text
    return response.status_code


async def security_count(stack: Stack, provider: str) -> int:
    async with stack.sessions() as s:
        total = await s.scalar(
            select(func.coalesce(func.sum(SecurityEvent.count), 0)).where(
                SecurityEvent.provider == provider, SecurityEvent.kind == "invalid_signature"
            )
        )
    return int(total or 0)


CORPUS_SIZES: dict[str, int] = {}


@pytest.mark.parametrize("provider", ["razorpay", "stripe", "standard"])
async def test_the_hostile_corpus_changes_nothing(stack: Stack, provider: str) -> None:
    currency = "EUR" if provider == "stripe" else "INR"
    order = await stack.place_order(provider, currency=currency)
    before = await snapshot(stack)
    cases = corpus(provider, order)
    wrong: list[str] = []
    for case in cases:
        status = await send(stack, provider, case)
        if status != case.status:
            wrong.append(f"{case.name}: {status}, expected {case.status}")
    await asyncio.sleep(1.2)  # the security events' counts are flushed once a second
    assert wrong == [], "\n".join(wrong)
    assert await snapshot(stack) == before
    rejected = sum(c.security_event for c in cases)
    assert await security_count(stack, provider) == rejected
    async with stack.sessions() as s:
        rows = await s.scalar(select(func.count()).select_from(SecurityEvent))
    assert rows is not None and rows <= 2  # one per source and minute (a minute may turn)
    # After all of that, the real confirmation still goes through.
    if provider == "stripe":  # a PaymentIntent is its own transaction
        tx, valid = order["payment"]["intent_id"], dumps(event_for(provider, order))
    else:
        tx = f"tx_{uuid.uuid4().hex[:12]}"
        valid = dumps(event_for(provider, order, tx=tx))
    response = await stack.http.post(
        f"/webhooks/{provider}",
        content=valid,
        headers=[*sign(provider, valid), ("Content-Type", "application/json")],
    )
    assert response.json() == {"result": "accepted"}
    # Awaited, not left running: the stack's closing invariant check once caught it between
    # marking the order paid and writing that audit entry.
    assert (await stack.result(confirmation_workflow_id(provider, tx))).outcome == "paid"
    CORPUS_SIZES[provider] = len(cases)
    print(f"{provider}: {len(cases)} hostile cases, {rejected} counted as security events")
