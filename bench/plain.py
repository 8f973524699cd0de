"""The reference point "a plain transactional handler": the same signature check, validation
and writes (payment row, order status, audit row, ticket) in one database transaction inside
one FastAPI request, without Temporal. Run as `uvicorn bench.plain:app` with
PAYSAGA_DATABASE_URL and PAYSAGA_RAZORPAY_WEBHOOK_SECRETS set.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets

from fastapi import FastAPI, Request, Response
from sqlalchemy import text

from db.session import make_engine
from domain import keys
from domain.statuses import OrderStatus, PaymentStatus

engine = make_engine(os.environ["PAYSAGA_DATABASE_URL"], pool_size=20)
SECRET = os.environ["PAYSAGA_RAZORPAY_WEBHOOK_SECRETS"].split(",")[0].encode()
app = FastAPI()

FIND = text(
    "SELECT p.id, p.order_id, o.amount, o.currency, p.status FROM payments p "
    "JOIN orders o ON o.id = p.order_id WHERE p.provider = 'razorpay' AND p.intent_id = :intent "
    "FOR UPDATE"
)


@app.post("/api/v1/webhooks/razorpay")
async def webhook(request: Request) -> Response:
    body = await request.body()
    signature = request.headers.get("x-razorpay-signature", "")
    if not hmac.compare_digest(hmac.new(SECRET, body, hashlib.sha256).hexdigest(), signature):
        return Response('{"detail": "bad signature"}', status_code=401)
    payment = json.loads(body)["payload"]["payment"]["entity"]
    async with engine.begin() as conn:
        row = (await conn.execute(FIND, {"intent": payment["order_id"]})).first()
        if row is None or (row.amount, row.currency) != (payment["amount"], payment["currency"]):
            return Response('{"result": "unmatched"}', status_code=200)
        if row.status == PaymentStatus.PAID:
            return Response('{"result": "duplicate"}', status_code=200)
        await conn.execute(
            text(
                "UPDATE payments SET status = 'paid', transaction_id = :tx, confirmed_at = now() "
                "WHERE id = :id"
            ),
            {"tx": payment["id"], "id": row.id},
        )
        await conn.execute(
            text(
                "UPDATE orders SET status = 'paid', paid_at = now(), updated_at = now() "
                "WHERE id = :id AND status = 'awaiting_payment'"
            ),
            {"id": row.order_id},
        )
        await conn.execute(
            text(
                "INSERT INTO audit_log (order_id, actor, action, detail, dedupe_key) VALUES "
                "(:id, 'gateway:razorpay', 'order.status_changed', '{}'::jsonb, :key)"
            ),
            {"id": row.order_id, "key": keys.status_changed(str(row.order_id), OrderStatus.PAID)},
        )
        await conn.execute(
            text("INSERT INTO tickets (order_id, code) VALUES (:id, :code)"),
            {"id": row.order_id, "code": secrets.token_urlsafe(18)},
        )
    return Response('{"result": "accepted"}', status_code=200)
