"""The refund workflow's side effects, each one guarded transaction in `db.refunds`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from db.refunds import finish_refund
from domain.payments import RefundNotice, RefundRun


class RefundActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn
    async def finish_refund(self, notice: RefundNotice) -> str:
        """The gateway's answer applied once: refunded (payment, order, stock, event) or a
        `refund_failed` case."""
        async with self.sessions.begin() as s:
            done = await finish_refund(s, notice, f"gateway:{notice.provider}")
        activity.logger.info("refund of %s: %s", notice.transaction_id, done)
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
                    status="failed",
                    event_id="",
                    event_type="refund.unanswered",
                ),
                run.requested_by,
            )

    def all(self) -> list[Any]:
        return [self.finish_refund, self.refund_unanswered]
