"""The confirmation workflow's one typed state: what it runs on, what its `state` query
answers, and what a continue-as-new carries into the next run.

Everything here crosses the Temporal boundary, so it holds plain JSON-able values, and every
list in it is bounded: a confirmation stuck for a month, or sent any number of requests, must
fit in one run's input.
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from domain import keys
from domain.payments import (
    NOT_CAPTURED,
    AdminRequest,
    Confirmation,
    PaymentState,
    RecoveryTiming,
)

# `attach`, `refund` and `resolve` act once per request id; the ids of this many recent
# requests are kept (older repeats are rare, and the workflow's own rules still guard them).
RECENT_REQUEST_IDS = 100


class Phase(StrEnum):
    """Where the saga resumes after a continue-as-new."""

    VALIDATE = "validate"  # 2
    STORE = "store"  # 4
    PARKED = "parked"  # 2a, 2b, already paid, late: money waits for an admin
    MARK_PAID = "mark_paid"  # 5
    VENDOR = "vendor"  # SEQ-BP-002: paid, waiting for the vendor's acceptance
    TICKET = "ticket"  # 8
    DONE = "done"


class AdminAction(StrEnum):
    RETRY = "retry"
    ATTACH = "attach"
    REFUND = "refund"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class AuditRecord:
    """One audit trail entry, written once by its dedupe key (UC-35 step 6)."""

    order_id: str | None
    actor: str
    action: str
    dedupe_key: str
    detail: dict[str, Any] = field(default_factory=dict)


def confirmation_records(c: Confirmation, order_id: str) -> tuple[AuditRecord, AuditRecord]:
    """Steps 6's entries for a confirmation applied to its order: the payment confirmed by
    its gateway, and the order's status change (written by the saga, or with step 5)."""
    source = {"provider": c.provider, "transaction_id": c.transaction_id}
    return (
        AuditRecord(
            order_id,
            f"gateway:{c.provider}",
            "payment.confirmed",
            keys.payment_confirmed(c.provider, c.transaction_id),
            source
            | {
                "amount": c.amount,
                "currency": c.currency,
                "event_id": c.event_id,
                "event_type": c.event_type,
            },
        ),
        order_paid_record(order_id, c.provider, c.transaction_id, "paysaga"),
    )


def order_paid_record(
    order_id: str, provider: str, transaction_id: str, actor: str, **extra: object
) -> AuditRecord:
    """The audit entry of an order becoming paid, whoever made it so (the saga, a repair)."""
    return AuditRecord(
        order_id,
        actor,
        "order.status_changed",
        keys.status_changed(order_id, "paid"),
        {"provider": provider, "transaction_id": transaction_id}
        | {"from": "awaiting_payment", "to": "paid"}
        | extra,
    )


@dataclass(frozen=True)
class QueuedRequest:
    action: AdminAction
    request: AdminRequest


@dataclass(frozen=True)
class AdminDecision:
    """What the workflow did with an admin request: the API answers with it."""

    workflow_id: str
    action: AdminAction
    request_id: str
    state: PaymentState
    acted: bool  # False: a repeat of a request that already acted

    def view(self) -> dict[str, str]:
        """What the API and `paysaga admin` answer with."""
        return {
            "status": "accepted" if self.acted else "repeated",
            "workflow_id": self.workflow_id,
            "action": self.action.value,
            "request_id": self.request_id,
            "state": self.state.value,
        }


@dataclass
class ConfirmationState:
    state: PaymentState = PaymentState.RECEIVED
    phase: Phase = Phase.VALIDATE
    order_id: str | None = None
    payment_id: int | None = None
    attach_to: str | None = None  # the order an admin attached this payment to
    parked_as: str | None = None  # the case kind while money waits for an admin
    ticket_code: str | None = None
    outcome: str | None = None  # "paid" | "resolved" | "refunded", once decided
    cases: list[str] = field(default_factory=list)  # case kinds this confirmation opened
    # Steps past their first phase (4a, 5a, 6a, 8a) and their last failure; the server
    # retries them (slowly) until they succeed, and `retry` makes the next attempt now.
    stuck: dict[str, str] = field(default_factory=dict)
    resume_state: PaymentState | None = None  # what `state` goes back to once unstuck
    pending_audit: list[AuditRecord] = field(default_factory=list)
    audit_logged: list[str] = field(default_factory=list)  # 6a fallback lines already written
    pending_requests: list[QueuedRequest] = field(default_factory=list)
    recent_request_ids: list[str] = field(default_factory=list)
    # An admin's refund of parked money was asked for; attach and retry no longer act. And
    # the refund workflow's word that the money went back (it ends the confirmation).
    refund_asked: bool = False
    refunded_note: str | None = None
    captured: bool = False  # this run (or an earlier one) captured the authorization
    # SEQ-BP-002 (issue 28): the order's acceptance window, if it needs its vendor's
    # acceptance (from step 2), when that window ends, and the answer once known.
    accept_seconds: int | None = None
    accept_by: str | None = None  # ISO 8601
    fulfilment: str | None = None
    runs: int = 1  # this run's number: 1 + the continue-as-new count
    history_suggested: bool = False  # did any run reach the server's continue-as-new hint

    @property
    def parked(self) -> bool:
        return self.phase == Phase.PARKED

    def may(self, action: AdminAction) -> str | None:
        """The one rule for admin actions: None if `action` can act now, else why not."""
        if action == AdminAction.REFUND and self.parked_as in NOT_CAPTURED:
            return (
                "refund refused: this authorization was never captured, so no money was taken;"
                " resolve it (the gateway voids the authorization)"
            )
        if self.refund_asked and action in (AdminAction.ATTACH, AdminAction.RETRY):
            return (
                f"{action} refused: a refund of this money was asked for; refund again or resolve"
            )
        if action == AdminAction.RETRY:
            if self.stuck or self.parked:
                return None
            return f"nothing to retry: the payment is {self.state} and no step is failing"
        if not self.parked:
            return f"{action} acts on parked money; the payment is {self.state}"
        if any(q.action != AdminAction.RETRY for q in self.pending_requests):
            return f"another admin decision on this payment is in progress; {action} later"
        return None

    def seen(self, request_id: str) -> bool:
        return request_id in self.recent_request_ids

    def remember(self, request_id: str) -> None:
        self.recent_request_ids.append(request_id)
        del self.recent_request_ids[:-RECENT_REQUEST_IDS]

    @property
    def pending_audit_keys(self) -> list[str]:
        return [e.dedupe_key for e in self.pending_audit]


@dataclass(frozen=True)
class ConfirmationRun:
    """The workflow's input: the confirmation, how this run waits out failures (None: the
    defaults; set by whoever starts it), and the state a continue-as-new carries over."""

    confirmation: Confirmation
    recovery: RecoveryTiming | None = None
    carried: ConfirmationState | None = None
    # The lean happy path (issue 24): set by every start since; a run recorded before has
    # no such field and replays the steps one at a time. An input, not `workflow.patched`:
    # a patch costs every run a marker and a visibility write (TemporalChangeVersion).
    lean: bool = False
