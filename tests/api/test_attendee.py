"""What attendees receive, on the real stack with a real SMTP server (aiosmtpd) in process:
the ticket PDF (its QR code decoded from the rendered page), one mail per event with the PDF
attached, 8a for mail (a server refusing for a while leaves payments alone; each mail arrives
once after), and the metrics each step moves on both endpoints."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pypdfium2  # type: ignore[import-untyped]
import pytest
import zxingcpp
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from activities.reconciliation import ReconcileInput
from db.models import Notification, Ticket
from domain.payments import confirmation_workflow_id
from observability.metrics import serve_worker_metrics
from paysaga.devstack import free_port
from paysaga.temporal import metrics_runtime
from tests.support.dashboards import dashboard_metric_names
from tests.support.gateway_events import failed, signed_confirmation, transaction_of
from tests.support.inbox import Inbox, mail_env, serving
from tests.support.outcomes import window_outcome
from tests.support.signing import stripe_request, stripe_succeeded_event
from tests.support.stack import Stack
from workflows.reconciliation import ReconcileWorkflow

ORGANIZER = "PyCon Test 2026"
# The Done-when asks for a minute; the suite refuses for less (PAYSAGA_TEST_SMTP_OUTAGE=60
# runs the minute).
OUTAGE_SECONDS = float(os.environ.get("PAYSAGA_TEST_SMTP_OUTAGE", "5"))


SMTP_PORT = free_port()


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with serving(SMTP_PORT) as handler:
        yield handler


@pytest.fixture
def stack_env() -> dict[str, str]:
    return mail_env(SMTP_PORT, ORGANIZER, PAYSAGA_PAYMENT_WINDOW_SECONDS="6")


async def order_for(stack: Stack, provider: str, attendee: str = "Zoë Ångström") -> dict[str, Any]:
    sku = f"CONF-{uuid.uuid4().hex[:8]}"
    product = {"sku": sku, "name": "Conference pass", "unit_amount": 49900, "currency": "INR"}
    created = await stack.http.post(
        "/admin/products", json=product | {"stock": 10}, headers=stack.admin
    )
    assert created.status_code == 201, created.text
    response = await stack.http.post(
        "/orders",
        json={
            "items": [{"sku": sku, "quantity": 1}],
            "provider": provider,
            "attendee": {
                "name": attendee,
                "email": f"{uuid.uuid4().hex[:8]}@mail.pycon-attendees.org",
            },
        },
        headers=stack.user(),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def pay(stack: Stack, provider: str, order: dict[str, Any]) -> str:
    tx = transaction_of(provider, order, f"tx_{uuid.uuid4().hex[:12]}")
    answer = await stack.post(f"/webhooks/{provider}", signed_confirmation(provider, order, tx))
    assert answer.json() == {"result": "accepted"}, answer.text
    assert (await stack.result(confirmation_workflow_id(provider, tx))).outcome == "paid"
    return tx


def qr_codes(pdf: bytes) -> list[str]:
    page = pypdfium2.PdfDocument(pdf)[0]
    image = page.render(scale=3).to_pil()
    return [code.text for code in zxingcpp.read_barcodes(image)]


def pdf_text(pdf: bytes) -> str:
    return str(pypdfium2.PdfDocument(pdf)[0].get_textpage().get_text_bounded())


async def test_paid_order_gets_its_pdf_ticket_and_one_mail_with_it(
    stack: Stack, inbox: Inbox
) -> None:
    order = await order_for(stack, "razorpay")
    unpaid = await stack.http.get(f"/orders/{order['id']}/ticket", headers=stack.user())
    assert unpaid.status_code == 409

    tx = await pay(stack, "razorpay", order)
    view = await stack.order(order["id"])
    code = view["ticket"]["code"]
    assert view["ticket"]["url"] == f"/api/v1/orders/{order['id']}/ticket"

    download = await stack.http.get(
        view["ticket"]["url"].removeprefix("/api/v1"), headers=stack.user()
    )
    assert download.status_code == 200 and download.headers["content-type"] == "application/pdf"
    pdf = download.content
    assert qr_codes(pdf) == [code]
    text = pdf_text(pdf)
    for expected in (ORGANIZER, "Zoë Ångström", "Conference pass", "INR 499.00", tx, order["id"]):
        assert expected in text, expected
    # Stored once: the download is the document the mail carries, byte for byte.
    async with stack.sessions() as s:
        stored = await s.scalar(select(Ticket.pdf).where(Ticket.order_id == uuid.UUID(order["id"])))
    assert stored == pdf
    other = await stack.http.get(f"/orders/{order['id']}/ticket", headers=stack.user("mallory"))
    assert other.status_code == 404

    mail = await inbox.wait_for(order["id"], "payment_confirmed")
    assert mail["To"] == order["attendee"]["email"]
    assert ORGANIZER in mail["Subject"] and ORGANIZER in mail["From"]
    assert code in mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    attachments = list(mail.iter_attachments())
    assert [a.get_content_type() for a in attachments] == ["application/pdf"]
    assert attachments[0].get_content() == pdf
    # The server took it before the relay records it sent: wait for the record.
    for _ in range(50):
        async with stack.sessions() as s:
            notes = (await s.scalars(select(Notification))).all()
        if [n.status for n in notes] == ["sent"]:
            break
        await asyncio.sleep(0.1)
    assert [(n.kind, n.status, n.attempts, n.message_id) for n in notes] == [
        ("payment_confirmed", "sent", 1, mail["Message-ID"])
    ]
    # A duplicate webhook changes nothing and sends nothing more.
    again = await stack.post("/webhooks/razorpay", signed_confirmation("razorpay", order, tx))
    assert again.json()["result"] == "duplicate"
    await asyncio.sleep(2)  # the relay polls every 0.5 s: give a wrong second mail its chance
    assert len(inbox.to_order(order["id"])) == 1


async def test_failed_payment_and_the_window_closing_each_mail_once(
    stack: Stack, inbox: Inbox
) -> None:
    order = await order_for(stack, "stripe", attendee="Łukasz")
    answer = await stack.post("/webhooks/stripe", failed("stripe", order))
    assert answer.json() == {"result": "accepted"}
    retry = await inbox.wait_for(order["id"], "payment_failed")
    body = retry.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "Hello Łukasz" in body and "try again" in body and "INR 499.00" in body

    assert await window_outcome(stack, order["id"]) == "expired"
    cancelled = await inbox.wait_for(order["id"], "order_cancelled")
    assert "cancelled" in cancelled["Subject"]
    await asyncio.sleep(1)
    kinds = sorted(m["X-Paysaga-Notification"] for m in inbox.to_order(order["id"]))
    assert kinds == ["order_cancelled", "payment_failed"]


async def worker_metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient() as client:
        return samples((await client.get(f"http://127.0.0.1:{port}/metrics")).text)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_smtp_refusing_leaves_orders_paid_and_each_mail_arrives_once_after(
    stack: Stack, inbox: Inbox
) -> None:
    server, port = serve_worker_metrics("127.0.0.1", 0, None)
    try:
        before = await worker_metrics(port)
        inbox.refusing = True
        orders = [await order_for(stack, "standard") for _ in range(3)]
        for order in orders:
            await pay(stack, "standard", order)
        # Paid at once, whatever the mail server says (8a).
        for order in orders:
            assert (await stack.order(order["id"]))["status"] == "paid"
        for _ in range(150):  # the first try and the server's first retry, 1 s later
            if inbox.refused >= 2:
                break
            await asyncio.sleep(0.2)
        assert inbox.refused >= 2 and inbox.messages == []
        errors = "paysaga_notifications_total"
        # The server refuses before the relay counts its error: wait for the count.
        for _ in range(50):
            during = await worker_metrics(port)
            if (
                value(during, errors, kind="payment_confirmed", result="error")
                >= value(before, errors, kind="payment_confirmed", result="error") + 2
            ):
                break
            await asyncio.sleep(0.1)
        assert (
            value(during, errors, kind="payment_confirmed", result="error")
            >= value(before, errors, kind="payment_confirmed", result="error") + 2
        )
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - 2))

        inbox.refusing = False
        for order in orders:
            await inbox.wait_for(order["id"], "payment_confirmed", seconds=90)
        await asyncio.sleep(1)
        for order in orders:
            assert len(inbox.to_order(order["id"])) == 1
        assert len({m["Message-ID"] for m in inbox.messages}) == 3
        after = await worker_metrics(port)
        assert (
            value(after, errors, kind="payment_confirmed", result="sent")
            == value(before, errors, kind="payment_confirmed", result="sent") + 3
        )
        async with stack.sessions() as s:
            notes = (await s.scalars(select(Notification).order_by(Notification.id))).all()
        assert [n.status for n in notes] == ["sent"] * 3
        # The first waited through the refusals (the others queued behind it), and its
        # record says so; a success clears the last error.
        assert notes[0].attempts >= 2 and notes[0].last_error is None
    finally:
        server.shutdown()


async def test_each_metric_moves_by_one_for_a_confirmation_a_duplicate_and_a_forgery(
    stack: Stack, inbox: Inbox
) -> None:
    runtime, sdk_url = metrics_runtime()
    server, port = serve_worker_metrics("127.0.0.1", 0, sdk_url)
    from temporalio.client import Client

    from paysaga.temporal import build_worker

    # A second worker on the test's queue whose Temporal SDK metrics are served (the SDK's
    # runtime is per client); the paysaga_* metrics are the process's, whichever runs a task.
    sdk_client = await Client.connect(
        stack.client.service_client.config.target_host, runtime=runtime
    )
    # ... and one on a queue of its own, so that at least one workflow and its activity
    # surely run on this client (the stack's worker may take every task of the shared queue).
    own_queue = f"{stack.task_queue}-sdk"
    try:
        async with (
            build_worker(sdk_client, stack.sessions, stack.task_queue),
            build_worker(sdk_client, stack.sessions, own_queue),
        ):
            await sdk_client.execute_workflow(
                ReconcileWorkflow.run,
                ReconcileInput(own_queue),
                id=f"reconcile-{own_queue}",
                task_queue=own_queue,
            )

            async def scrape() -> tuple[dict[Any, float], dict[Any, float], str]:
                api = (await stack.http.get("/metrics")).text
                worker = (
                    await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/metrics")
                ).text
                return samples(api), samples(worker), api + worker

            order = await order_for(stack, "stripe")
            api0, worker0, _ = await scrape()
            event = stripe_succeeded_event(order["payment"]["intent_id"], 49900, "inr")
            assert (await stack.post("/webhooks/stripe", stripe_request(event))).json() == {
                "result": "accepted"
            }
            tx = order["payment"]["intent_id"]
            assert (await stack.result(confirmation_workflow_id("stripe", tx))).outcome == "paid"
            api1, worker1, _ = await scrape()
            duplicate = await stack.post("/webhooks/stripe", stripe_request(event))
            assert duplicate.json() == {"result": "duplicate"}
            api2, worker2, _ = await scrape()
            forged = await stack.post("/webhooks/stripe", stripe_request(event, "whsec_forged"))
            assert forged.status_code == 401
            api3, worker3, text = await scrape()

            def moved(
                before: dict[Any, float], after: dict[Any, float], name: str, **labels: str
            ) -> float:
                return value(after, name, **labels) - value(before, name, **labels)

            hooks = "paysaga_webhooks_total"
            assert moved(api0, api1, hooks, provider="stripe", result="accepted") == 1
            assert moved(worker0, worker1, "paysaga_confirmations_total", outcome="paid") == 1
            assert moved(worker0, worker1, "paysaga_confirmation_seconds_count") == 1
            assert moved(api1, api2, hooks, provider="stripe", result="duplicate") == 1
            assert moved(worker1, worker2, "paysaga_confirmations_total", outcome="paid") == 0
            assert moved(api2, api3, hooks, provider="stripe", result="rejected") == 1
            assert moved(api2, api3, hooks, provider="stripe", result="accepted") == 0
            timed = "paysaga_http_request_seconds_count"
            refused = dict(method="POST", route="/webhooks/stripe", status="401")
            assert moved(api2, api3, timed, **refused) == 1
            assert value(api3, "paysaga_open_cases", kind="unmatched") == 0
            # The Temporal SDK's own metrics come through the worker's endpoint.
            assert any(name.startswith("temporal_") for name, _ in worker3)
            # Every name the Grafana dashboard queries is served by one of the two. Some of
            # the SDK's appear only with their first event: a failure, or an activity run by
            # this second worker (the stack's own worker may take all of them).
            lazy = {
                "temporal_activity_execution_latency",
                "temporal_activity_schedule_to_start_latency",
                "temporal_workflow_failed",
                "temporal_activity_execution_failed",
                "temporal_workflow_task_execution_failed",
            }
            served = {family.name for family in text_string_to_metric_families(text)}
            missing = {
                n
                for n in dashboard_metric_names() - lazy
                if n not in served and n.removesuffix("_total") not in served
            }
            assert missing == set()
    finally:
        server.shutdown()
