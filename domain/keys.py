"""Every natural dedupe key, built in one place.

The audit trail, the event log and the security events are insert-once tables keyed by these
strings, so a retried activity, a replayed workflow or a repair by the reconciliation sweep
writes a fact once. A key that is built twice, slightly differently, is a fact written twice.
"""

from __future__ import annotations

# The one key whose shape SQL also needs (the invariant check joins on it).
STATUS_CHANGED = "order.status_changed:{order_id}:{to}"


def status_changed(order_id: str, to: str) -> str:
    return STATUS_CHANGED.format(order_id=order_id, to=to)


def payment_confirmed(provider: str, transaction_id: str) -> str:
    return f"payment.confirmed:{provider}:{transaction_id}"


def payment_refunded(provider: str, transaction_id: str) -> str:
    return f"payment.refunded:{provider}:{transaction_id}"


def admin_request(action: str, provider: str, transaction_id: str, request_id: str) -> str:
    """`action` includes any suffix, e.g. `admin.attach.ignored`."""
    return f"{action}:{provider}:{transaction_id}:{request_id}"


def event(type_: str, *parts: object) -> str:
    """Event log keys: `OrderPaid:{order_id}`, `PaymentConfirmed:{provider}:{tx}`, ..."""
    return ":".join([type_, *map(str, parts)])


def amount_mismatch(provider: str, transaction_id: str) -> str:
    return f"amount_mismatch:{provider}:{transaction_id}"


def fulfilment_changed(order_id: str, to: str) -> str:
    """A vendor acceptance's transitions: to pending (paid), accepted, rejected; once each."""
    return f"order.fulfilment_changed:{order_id}:{to}"
