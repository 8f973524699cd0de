"""Connecting to Temporal and building the worker: one place, used by the CLI and the tests."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.confirmation import ConfirmationActivities
from activities.reconciliation import ReconcileInput, ReconciliationActivities
from paysaga.settings import Settings
from workflows.payment_confirmation import ConfirmPaymentWorkflow
from workflows.reconciliation import ReconcileWorkflow, ensure_schedule

SEARCH_ATTRIBUTES = {"PaymentState": "Keyword", "OrderId": "Keyword", "TransactionId": "Keyword"}
WORKFLOWS = [ConfirmPaymentWorkflow, ReconcileWorkflow]


async def connect(settings: Settings, wait_seconds: float = 60.0) -> Client:
    """Connects, waiting while a just-started server says "frontend is not healthy yet"."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return await Client.connect(
                settings.temporal_address, namespace=settings.temporal_namespace
            )
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def build_worker(
    client: Client, sessions: async_sessionmaker[AsyncSession], task_queue: str
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[
            *ConfirmationActivities(sessions).all(),
            ReconciliationActivities(sessions, client).reconcile,
        ],
    )


async def ensure_reconciliation_schedule(client: Client, settings: Settings) -> None:
    await ensure_schedule(
        client,
        ReconcileInput(settings.task_queue, settings.unmatched_alert_seconds),
        settings.reconcile_every_seconds,
    )
