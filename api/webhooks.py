"""Gateway webhooks: verify the signature, normalise, start the confirmation workflow, answer.

A refund notice is handed to its refund's workflow (`workflows.refund_client.tell_refund`).
The gateway gets its 200 as soon as the workflow start is durable in Temporal; everything
else happens in the workflow. Order of checks: size (413, `api.limits`, for every route),
media type (415), signature (401), body (400), then the workflow (503 if it cannot be
started, so the gateway retries).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter, Request
from sqlalchemy.exc import DBAPIError, InterfaceError

from api.auth import DepsDep
from api.deps import Deps
from api.errors import ApiError, BadRequest, Unauthorized, UnsupportedMediaType
from api.schemas import WebhookAnswer
from db.attempts import end_attempt, payment_already_confirmed
from domain.payments import AttemptEnd, Confirmation
from domain.statuses import PaymentStatus, WebhookResult
from gateways import MalformedEvent, SignatureError, registry
from observability.logs import log_context
from observability.metrics import WEBHOOKS
from workflows.confirmation_client import start_confirmation
from workflows.refund_client import tell_refund

log = logging.getLogger("paysaga.webhooks")


async def _record_rejection(deps: Deps, provider: str, request: Request, reason: str) -> None:
    """2a2: every rejected confirmation counts in a security event (aggregated per source and
    minute, `api.security`); the log line names its reason."""
    source = request.client.host if request.client else None
    await deps.rejections.record(provider, source, reason, request.url.path)
    log.warning("rejected %s webhook from %s: %s", provider, source, reason)


async def confirm(
    deps: Deps, c: Confirmation
) -> Literal[WebhookResult.ACCEPTED, WebhookResult.DUPLICATE]:
    """Starts `payment-{provider}-{transaction_id}`, or says it is a duplicate."""
    try:
        async with deps.sessions() as s:
            # One read, outside a transaction: no BEGIN and ROLLBACK round trips on the ack path.
            await s.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            # 3a after the workflow's retention expired: the database key still says "done".
            if await payment_already_confirmed(s, c.provider, c.transaction_id):
                return WebhookResult.DUPLICATE
    except (DBAPIError, InterfaceError, OSError) as exc:
        # Best effort: with the database down the confirmation is still taken durably by
        # Temporal; the workflow id and the database keys keep it exactly once.
        log.warning("duplicate pre-check skipped, database unavailable: %s", exc)
    settings = deps.settings
    # When it arrived, for `paysaga_confirmation_seconds` (measured where the order is paid).
    c = dataclasses.replace(c, received_at=time.time())
    return await start_confirmation(
        await deps.temporal(), settings.task_queue, c, settings.recovery
    )


async def end_attempt_from(
    deps: Deps, end: AttemptEnd
) -> Literal[WebhookResult.ACCEPTED, WebhookResult.IGNORED]:
    """A failed or cancelled attempt: recorded at once, in one transaction with its event.

    No workflow is started for it, so it never spends `payment-{provider}-{tx}`: a Stripe
    PaymentIntent that fails and then succeeds is confirmed like any other. The order keeps
    waiting for a new attempt until its window closes. A database that is down answers 503
    and the gateway retries; an attempt that is no longer pending (paid already, or its
    failure told twice) or unknown is `ignored`."""
    detail = {"event_id": end.event_id, "event_type": end.event_type, "reason": end.reason}
    async with deps.sessions.begin() as s:
        order_id = await end_attempt(
            s, end.provider, end.intent_id, PaymentStatus(end.status), detail
        )
    if order_id is None:
        log.info("ignored %s %s for intent %s", end.provider, end.event_type, end.intent_id)
        return WebhookResult.IGNORED
    log.info("payment attempt %s %s: order %s", end.intent_id, end.status, order_id)
    return WebhookResult.ACCEPTED


async def _handle(provider: str, request: Request, deps: Deps) -> WebhookAnswer:
    """`_verified_handle`, counted in `paysaga_webhooks_total` by what became of it: refused
    (4xx) is `rejected`, anything else that failed (503, a bug) is `error`."""
    result = "error"
    try:
        answer = await _verified_handle(provider, request, deps)
        result = answer.result
        return answer
    except ApiError as exc:
        result = WebhookResult.REJECTED if exc.status < 500 else WebhookResult.ERROR
        raise
    finally:
        WEBHOOKS.labels(provider, result).inc()


async def _verified_handle(provider: str, request: Request, deps: Deps) -> WebhookAnswer:
    body = await request.body()  # capped at 256 KiB by api.limits before it got here
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("webhook body must be application/json")
    gateway = deps.gateway(provider).webhooks
    try:
        gateway.verify(body, request.headers, time.time())
    except SignatureError as exc:
        await _record_rejection(deps, provider, request, str(exc))
        # The reason is in the log and the security event, not in the answer.
        raise Unauthorized("signature missing, invalid or outside the time tolerance") from exc
    try:
        event = gateway.parse(body, request.headers)
    except MalformedEvent as exc:
        raise BadRequest(str(exc)) from exc
    if event.attempt_end is not None:
        return WebhookAnswer(result=await end_attempt_from(deps, event.attempt_end))
    if event.refund is not None:
        n = event.refund
        with log_context(transaction_id=n.transaction_id):
            await tell_refund(await deps.temporal(), deps.settings.task_queue, n)
            log.info("%s refund %s for %s: %s", provider, n.refund_id, n.transaction_id, n.status)
        return WebhookAnswer(result=WebhookResult.ACCEPTED)
    if event.confirmation is None:
        log.info("ignored %s event %s (%s)", provider, event.event_id, event.event_type)
        return WebhookAnswer(result=WebhookResult.IGNORED)
    c = event.confirmation
    with log_context(transaction_id=c.transaction_id, order_id=c.order_id):
        result = await confirm(deps, c)
        log.info("%s %s payment %s: %s", provider, event.event_type, c.transaction_id, result)
    return WebhookAnswer(result=result)


def routes(gateways: registry.Gateways) -> APIRouter:
    """`POST /webhooks/{name}` for every registered gateway, each its own route (and its own
    entry in the OpenAPI document), built when the app is."""
    router = APIRouter()
    for gateway in gateways:
        router.add_api_route(
            f"/webhooks/{gateway.name}",
            _endpoint(gateway.name),
            methods=["POST"],
            name=f"{gateway.name}_webhook",
            summary=f"{gateway.name} webhook",
            response_model=WebhookAnswer,
        )
    return router


def _endpoint(provider: str) -> Callable[[Request, Deps], Awaitable[WebhookAnswer]]:
    async def webhook(request: Request, deps: DepsDep) -> WebhookAnswer:
        return await _handle(provider, request, deps)

    return webhook
