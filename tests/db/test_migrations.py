"""Migrations applied to a database that already holds data, as a running deployment has."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from db.migrate import upgrade
from db.session import make_engine
from paysaga.postgres import EmbeddedPostgres


async def test_0002_backfills_windows_stock_totals_and_placed_events(pg: EmbeddedPostgres) -> None:
    name = f"migrate_{uuid.uuid4().hex[:8]}"
    await pg.create_database(name)
    url = pg.url(name)
    await asyncio.to_thread(upgrade, url, "0001")
    engine = make_engine(url)
    paid, waiting = uuid.uuid4(), uuid.uuid4()
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO products (sku, name, unit_amount, currency, stock) "
                    "VALUES ('SEAT', 'Seat', 100, 'EUR', 7)"
                )
            )
            for order_id, status in ((paid, "paid"), (waiting, "awaiting_payment")):
                await conn.execute(
                    text(
                        "INSERT INTO orders (id, customer_id, status, amount, currency) "
                        "VALUES (:id, 'alice', :status, 200, 'EUR')"
                    ),
                    {"id": order_id, "status": status},
                )
                await conn.execute(
                    text(
                        "INSERT INTO order_items (order_id, sku, name, quantity, unit_amount) "
                        "VALUES (:id, 'SEAT', 'Seat', 2, 100)"
                    ),
                    {"id": order_id},
                )
        await asyncio.to_thread(upgrade, url)
        async with engine.connect() as conn:
            total = await conn.scalar(text("SELECT total_stock FROM products"))
            rows = (await conn.execute(text("SELECT status, lifecycle_started FROM orders"))).all()
            orders = {str(status): bool(started) for status, started in rows}
            windows = await conn.scalar(
                text("SELECT count(*) FROM orders WHERE expires_at = created_at + interval '900 s'")
            )
            placed = (
                await conn.execute(text("SELECT order_id, type, txid::text FROM events"))
            ).all()
    finally:
        await engine.dispose()
    assert total == 7 + 2 + 2  # what is left plus what both live orders hold
    assert orders == {"paid": True, "awaiting_payment": False}  # the sweep starts the other
    assert windows == 2
    assert [(row.order_id, row.type) for row in placed] == [(paid, "OrderPlaced")]
    assert placed[0].txid.isdigit()
