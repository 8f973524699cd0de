"""The vendor's acceptance window, as one of the window keeper's windows (issue 28).

A paid order that needs its vendor's acceptance is `pending_vendor_acceptance` until
`accept_by`, written on its row when it was paid (`db.orders.mark_paid`), so the window is
as durable as the order. The keeper's round (`activities.windows`) calls `close_due` every
poll: each order whose window has passed is rejected (`timeout`, by `system:vendor_window`)
through the same code as a vendor's rejection (`db.fulfilment.reject`), whose conditional
update decides the race with a vendor answering at the last moment. Then, after the commit,
its full refund is started and its confirmation workflow told.

Idempotent, and safe after a crash half way: an order rejected here is no longer due, and a
rejection that committed without its refund's workflow started (the process died, Temporal
was down) is found again on the next round (a fresh window) or after any failure, among the
recently rejected orders whose refund is pending with no gateway answer yet; starting a
refund that runs already is the same refund. The reconciliation sweep is the backstop after
that (a pending refund with no workflow running).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError

from activities.windows import Closing
from db.fulfilment import PENDING, TIMEOUT, WINDOW, Decided, NotPending, reject
from db.models import Order, Refund
from domain.fulfilment import VendorAnswer
from domain.payments import RefundRun
from domain.statuses import FulfilmentStatus, RefundStatus
from workflows.fulfilment_client import tell_fulfilment
from workflows.refund_client import start_refund

log = logging.getLogger("paysaga.fulfilment")

# Rejections this recent whose refund may not have been started are started again (older
# ones are the reconciliation sweep's, which checks for a running workflow first).
RECOVER_WITHIN = timedelta(minutes=10)
RECOVER_BATCH = 100  # a poll's worth; more are found by the next recovery


class AcceptanceWindow(Closing):
    """A `Window` of `activities.windows` (its protocol, exactly): `close_due` starts
    rejecting what is due, at most `concurrency` orders in flight, and returns how many it
    started; `drain` waits for them (or cancels them: a rejection is one transaction, redone
    by the next round if cut). `closed` counts the orders it rejected. `client` None (tests
    of the database side only): nothing is started or told. `task_queue` for the refunds it
    starts: given, or the keeper activity's own."""

    name = "vendor_acceptance"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: Client | None,
        task_queue: str | None = None,
        concurrency: int = 16,
    ) -> None:
        super().__init__(sessions, concurrency)  # `closed`: the orders it rejected
        self.client = client
        self.task_queue = task_queue
        # Look for refunds not started: at first (a fresh window after a crash or a new
        # round) and after anything failed.
        self._recover = True

    async def close_due(self) -> int:
        if self.client is not None and self.task_queue is None:
            self.task_queue = activity.info().task_queue
        if self._recover:  # rare (a new round, a failure), and a query when nothing is lost
            self._recover = False
            await self._start_lost_refunds()
        return await self.start_due(
            lambda room: (
                select(Order.id)
                .where(Order.fulfilment == PENDING, Order.accept_by <= func.now())
                .order_by(Order.accept_by)
                .limit(room)
            )
        )

    async def _close(self, order_id: uuid.UUID) -> bool:
        try:
            async with self.sessions.begin() as s:
                decided = await reject(s, order_id, WINDOW, TIMEOUT)
        except NotPending:
            return False  # the vendor answered first
        except Exception as exc:
            log.warning("order %s: acceptance window not closed yet: %s", order_id, exc)
            return False
        log.info("order %s: not accepted in time: rejected, refund asked", order_id)
        await self._follow(decided)
        return True

    async def _follow(self, decided: Decided) -> None:
        """The refund started and the confirmation told, after the commit."""
        if self.client is None:
            return
        asked = decided.refund
        if asked is not None and asked.status == RefundStatus.PENDING:
            try:
                run = RefundRun(asked.provider, asked.transaction_id, WINDOW)
                await start_refund(self.client, self._queue(), run)
            except RPCError as exc:
                self._recover = True
                log.warning("order %s rejected; refund not started yet: %s", decided.order_id, exc)
        answer = VendorAnswer(str(decided.order_id), FulfilmentStatus.REJECTED, WINDOW, TIMEOUT)
        await tell_fulfilment(self.client, decided.provider, decided.transaction_id, answer)

    async def _start_lost_refunds(self) -> None:
        """Refunds of recently rejected orders still pending with no gateway answer: each
        started again (a running one is the same refund, so this is a no-op for it)."""
        try:
            await self._restart_refunds()
        except Exception as exc:  # the database gone: the next poll tries again
            self._recover = True
            log.warning("refunds of rejected orders not looked for yet: %s", exc)

    async def _restart_refunds(self) -> None:
        if self.client is None:
            return
        async with self.sessions() as s:
            rows = (
                await s.execute(
                    select(Refund.provider, Refund.transaction_id, Refund.requested_by)
                    .join(Order, Order.id == Refund.order_id)
                    .where(
                        Order.fulfilment == FulfilmentStatus.REJECTED,
                        Refund.status == RefundStatus.PENDING,
                        Refund.gateway_refund_id.is_(None),
                        Refund.created_at > func.now() - RECOVER_WITHIN,
                    )
                    .order_by(Refund.created_at)
                    .limit(RECOVER_BATCH)
                )
            ).all()
        for provider, transaction_id, requested_by in rows:
            try:
                await start_refund(
                    self.client, self._queue(), RefundRun(provider, transaction_id, requested_by)
                )
            except RPCError as exc:
                self._recover = True
                log.warning("refund %s %s: not started yet: %s", provider, transaction_id, exc)

    def _queue(self) -> str:
        assert self.task_queue is not None  # set by `close_due` before any close
        return self.task_queue
