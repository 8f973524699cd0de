"""The names by which the rest of paysaga talks to the workflows: workflow types, their
signals, updates and queries, the search attributes they keep, and the refusal type.

Each name is written here once; the workflow classes declare their handlers with these
constants, and the clients (`workflows.*_client`, activities, `db.invariants`) start, signal,
query and update by them, with no import of a workflow class. That keeps the layers one way:
a workflow imports its activities, and activities that start workflows import only names.
The workflow ids are beside the inputs they are made from (`domain.payments`).

Every value is recorded in histories that are replayed (tests/workflows): never rename one.
"""

from temporalio.common import SearchAttributeKey

from domain.confirmation import AdminAction

# Workflow types.
CONFIRM_PAYMENT = "ConfirmPayment"
ORDER_LIFECYCLE = "OrderLifecycle"
REFUND = "Refund"
RECONCILE = "Reconcile"
MAIL_RELAY = "MailRelay"
WINDOW_KEEPER = "WindowKeeper"

# ConfirmPayment: each admin action is an update (for the API) and a signal (for the
# Temporal UI and CLI) named for the action; the refund workflow signals `refunded`.
UPDATES: dict[AdminAction, str] = {action: action.value for action in AdminAction}
REFUNDED = "refunded"
# The ApplicationError type of an update's refusal; the API answers it with 409.
REFUSED = "ActionRefused"
# ConfirmPayment's `state` (a ConfirmationState) and OrderLifecycle's (an OrderState value).
STATE = "state"

# OrderLifecycle's signals (lifecycles started before the window keeper still receive none,
# and end by their timer).
PAID = "paid"
CLOSED = "closed"

# ConfirmPayment, for an order that waits for its vendor: the vendor's (or the window's)
# answer, a VendorAnswer (issue 28).
FULFILMENT = "fulfilment"

# Refund: the gateway's answer (a RefundNotice), and what it has received so far.
GATEWAY_ANSWER = "gateway_answer"
ANSWERS = "answers"

# Search attributes, for operators filtering in the UI (registered by `paysaga.temporal`).
PAYMENT_STATE = SearchAttributeKey.for_keyword("PaymentState")
ORDER_ID = SearchAttributeKey.for_keyword("OrderId")
TRANSACTION_ID = SearchAttributeKey.for_keyword("TransactionId")
ORDER_STATE = SearchAttributeKey.for_keyword("OrderState")
