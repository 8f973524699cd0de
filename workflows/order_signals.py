"""Telling an order's lifecycle what happened to it, from outside a workflow: the API (after a
cancel), the confirmation's mark-paid activity and the sweep (after the order is paid).

Best effort by design: a lifecycle that misses a signal finds the order's status in the
database when its window ends, and ends the same way; one that has ended or never started
(NOT_FOUND) needs nothing.
"""

from __future__ import annotations

import logging

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.orders import OrderClosed
from domain.payments import order_workflow_id
from domain.workflow_names import CLOSED, PAID

log = logging.getLogger("paysaga.orders")


async def tell_order(client: Client, order_id: str, signal: str, arg: object = None) -> None:
    """`signal` is one of the lifecycle's: `paid` (no argument) or `closed` (OrderClosed)."""
    handle = client.get_workflow_handle(order_workflow_id(order_id))
    try:
        if arg is None:
            await handle.signal(signal)
        else:
            await handle.signal(signal, arg)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            log.warning("order-%s not told %s: %s", order_id, signal, exc)


async def tell_paid(client: Client, order_id: str) -> None:
    await tell_order(client, order_id, PAID)


async def tell_closed(client: Client, order_id: str, reason: str) -> None:
    await tell_order(client, order_id, CLOSED, OrderClosed(reason))
