"""Telling a confirmation workflow that its order's vendor answered (SEQ-BP-002, issue 28),
from outside a workflow: the vendor's routes and the window keeper, after the decision
committed.

Best effort by design: a workflow that misses the signal reads the order's row once the
window is over (`workflows.confirmation_vendor`); one that has ended, or that never waited
(an order marked paid by the reconciliation sweep), is NOT_FOUND or ignores it.
"""

from __future__ import annotations

import logging

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.fulfilment import VendorAnswer
from domain.payments import confirmation_workflow_id
from domain.workflow_names import FULFILMENT

log = logging.getLogger("paysaga.fulfilment")


async def tell_fulfilment(
    client: Client, provider: str | None, transaction_id: str | None, answer: VendorAnswer
) -> None:
    """Signals `payment-{provider}-{transaction_id}` (the payment that paid the order)."""
    if provider is None or transaction_id is None:
        return
    handle = client.get_workflow_handle(confirmation_workflow_id(provider, transaction_id))
    try:
        await handle.signal(FULFILMENT, answer)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            log.warning("order %s: confirmation not told %s: %s", answer.order_id, answer, exc)
