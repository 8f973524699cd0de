"""The refund workflow's side effects, each one guarded transaction in `db.refunds`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from db.models import Refund
from db.refunds import finish_refund, gateway_key
from domain.payments import (
    RefundAnswer,
    RefundNotice,
    RefundRun,
    confirmation_workflow_id,
)
from domain.statuses import RefundStatus
from domain.workflow_names import REFUNDED
from gateways import Gateways
from gateways.api import GatewayRefused


class RefundActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        gateways: Gateways | None = None,
        client: Client | None = None,
    ) -> None:
        self.sessions = sessions
        self.client = client  # to settle a parked confirmation once its money went back
        self.gateways = gateways  # online mode: the gateways with an API refund there

    @activity.defn
    async def refund_at_gateway(self, run: RefundRun) -> RefundNotice | None:
        """Online mode: asks the gateway to refund the payment in full (the idempotency key
        makes a retry the same refund). Its answer, if final; None when the refund is still
        pending there (its webhook answers later) or in offline mode (the operator refunds in
        the dashboard). The gateway unreachable: raised, so the server retries."""
        async with self.sessions() as s:
            # What goes back: every refund asked for here is recorded as pending first
            # (owner, admin, unfulfillable, late payment), with the amount paid.
            paid = await s.scalar(
                select(Refund).where(
                    Refund.provider == run.provider, Refund.transaction_id == run.transaction_id
                )
            )
        gateway = self.gateways.get(run.provider) if self.gateways else None
        if gateway is None or gateway.api is None or paid is None:
            return None  # offline: the operator refunds in the gateway's dashboard
        event = f"refund.{run.provider}.api"
        # One key per ask: the same across retries and restarts (a call whose answer was
        # lost is the same refund), a new one when asked again after a failure.
        key = gateway_key(paid)
        try:
            refund = await gateway.api.refund(run.transaction_id, paid.amount, paid.currency, key)
        except GatewayRefused as exc:
            return RefundNotice(
                run.provider,
                run.transaction_id,
                f"refused: {exc}"[:200],
                paid.amount,
                paid.currency,
                RefundStatus.FAILED,
                "",
                event,
            )
        if refund.status == RefundStatus.PENDING:
            return None
        status = (
            RefundStatus.SUCCEEDED
            if refund.status == RefundStatus.SUCCEEDED
            else RefundStatus.FAILED
        )
        return RefundNotice(
            run.provider,
            run.transaction_id,
            refund.id,
            refund.amount,
            refund.currency,
            status,
            refund.id,
            event,
        )

    @activity.defn
    async def finish_refund(self, answer: RefundAnswer) -> str:
        """The gateway's answer applied once: refunded (payment, order, stock, event) or a
        `refund_failed` case."""
        async with self.sessions.begin() as s:
            done = await finish_refund(s, answer.notice, answer.requested_by)
        activity.logger.info("refund of %s: %s", answer.notice.transaction_id, done)
        return done

    @activity.defn
    async def refund_unanswered(self, run: RefundRun) -> None:
        """No answer from the gateway for a long while: a case, so a person looks."""
        async with self.sessions.begin() as s:
            await finish_refund(
                s,
                RefundNotice(
                    provider=run.provider,
                    transaction_id=run.transaction_id,
                    refund_id="unanswered",
                    amount=0,
                    currency="XXX",
                    status=RefundStatus.FAILED,
                    event_id="",
                    event_type="refund.unanswered",
                ),
                run.requested_by,
            )

    @activity.defn
    async def settle_parked(self, run: RefundRun) -> bool:
        """Refunded money whose confirmation is parked (a late payment, or money an admin
        refunded) is settled: its workflow is told `refunded`, closes its cases and ends so.
        False if none is running."""
        if self.client is None:
            return False
        handle = self.client.get_workflow_handle(
            confirmation_workflow_id(run.provider, run.transaction_id)
        )
        note = f"refunded to the payer (refund asked by {run.requested_by})"
        try:
            await handle.signal(REFUNDED, note)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    def all(self) -> list[Any]:
        return [
            self.refund_at_gateway,
            self.finish_refund,
            self.refund_unanswered,
            self.settle_parked,
        ]
