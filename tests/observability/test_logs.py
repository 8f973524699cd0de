"""Log lines: one JSON object (or a text line) per record, carrying the workflow, transaction
and order ids wherever they are known, and never a secret (`observability.logs`)."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from unittest.mock import patch

import pytest

from api.auth import make_token
from domain.payments import confirmation_workflow_id
from observability.logs import Context, configure_logging, ids_of_workflow, log_context
from tests.support.signing import SECRETS, razorpay_payment_event, razorpay_request
from tests.support.stack import Stack

WEBHOOK_SECRET = "whsec_abcdef1234567890"
IDS = {"transaction_id": "pay_1", "order_id": "o-1", "workflow_id": "payment-stripe-pay_1"}

Configure = Callable[..., io.StringIO]


@pytest.fixture
def configure() -> Iterator[Configure]:
    """`configure_logging(...)`, its handler writing to a StringIO the test reads.

    pytest's own capture handlers stay on the root logger (they are per test phase); only the
    handler `configure_logging` made is added, and it is removed again afterwards, with the
    root logger's level, so no other test sees it."""
    root = logging.getLogger()
    level = root.level
    installed: list[logging.Handler] = []

    def configure_(fmt: str, secrets: Sequence[str] = ()) -> io.StringIO:
        before = list(root.handlers)
        configure_logging(fmt, "svc", secrets=secrets)
        try:
            assert len(root.handlers) == 1, "configure_logging leaves the root one handler"
            handler = root.handlers[0]
            assert isinstance(handler, logging.StreamHandler)
        finally:
            installed.extend(h for h in root.handlers if h not in before)
            root.handlers[:] = [*before, *installed]
        stream = io.StringIO()
        handler.setStream(stream)
        return stream

    yield configure_
    for handler in installed:
        root.removeHandler(handler)
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line must be exactly one JSON object (json.loads fails the test otherwise)."""
    lines = stream.getvalue().splitlines()
    objects = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) for o in objects), lines
    return objects


def test_json_lines_carry_the_context_ids_inside_the_block_only(configure: Configure) -> None:
    stream = configure("json")
    log = logging.getLogger("x")

    log.info("before")
    with log_context(**IDS):
        log.info("confirming %s", "pay_1")
        log.warning("still inside")
    log.info("after")

    before, inside, warning, after = json_lines(stream)
    for line in (before, inside, warning, after):
        assert set(line) >= {"ts", "level", "service", "logger", "message"}
        assert line["service"] == "svc" and line["logger"] == "x"
        assert line["ts"].endswith("+00:00")
    assert inside["message"] == "confirming pay_1" and inside["level"] == "info"
    assert warning["level"] == "warning"
    for line in (inside, warning):
        assert {k: line[k] for k in IDS} == IDS
    for line in (before, after):
        assert not set(line) & set(IDS), line


def test_nested_context_adds_and_restores_and_skips_none(configure: Configure) -> None:
    stream = configure("json")
    log = logging.getLogger("x")

    with log_context(order_id="o-1"):
        with log_context(transaction_id="pay_2", order_id=None):
            log.info("inner")
        log.info("outer")

    inner, outer = json_lines(stream)
    assert (inner["order_id"], inner["transaction_id"]) == ("o-1", "pay_2")
    assert outer["order_id"] == "o-1" and "transaction_id" not in outer


def test_sdk_loggers_info_dict_gives_the_ids(configure: Configure) -> None:
    """temporalio's activity/workflow loggers put their info in `temporal_activity` etc."""
    stream = configure("json")
    info = {"workflow_id": "payment-razorpay-pay_X", "activity_type": "store_payment"}

    logging.getLogger("temporalio.activity").info("sdk line", extra={"temporal_activity": info})

    (line,) = json_lines(stream)
    assert line["workflow_id"] == "payment-razorpay-pay_X"
    assert line["transaction_id"] == "pay_X"


def test_text_format_has_the_ids_as_a_suffix(configure: Configure) -> None:
    stream = configure("text")
    log = logging.getLogger("x")

    with log_context(**IDS):
        log.info("inside")
    log.info("outside")

    inside, outside = stream.getvalue().splitlines()
    assert inside.endswith(
        " INFO x inside [workflow_id=payment-stripe-pay_1 transaction_id=pay_1 order_id=o-1]"
    )
    assert outside.endswith(" INFO x outside")


# --- redaction ---------------------------------------------------------------------------

RAZORPAY_SIGNATURE = "9f" * 32  # a hex HMAC-SHA256, as in X-Razorpay-Signature
STRIPE_SIGNATURE = "a1b2c3d4" * 8

OTHER_SK, OTHER_RK = "sk_live_51HxQwErTy123456", "rk_live_51HxQwErTy654321"
OTHER_WHSEC = "whsec_OtherAccount987654321"


def _secrets() -> dict[str, tuple[str, list[str]]]:
    """name: (the text that reaches a log line, the parts of it that must not be written)."""
    jwt = make_token(SECRETS["jwt"], "alice")
    _, claims, signature = jwt.split(".")
    return {
        "configured secret": (f"secret={WEBHOOK_SECRET}", [WEBHOOK_SECRET, "abcdef1234567890"]),
        "bearer token": (f"Authorization: Bearer {jwt}", [jwt, claims, signature]),
        "bare jwt": (f"token {jwt} refused", [jwt, claims, signature]),
        "stripe signature": (
            f"Stripe-Signature: t=1700000000,v1={STRIPE_SIGNATURE}",
            [STRIPE_SIGNATURE],
        ),
        "razorpay signature": (f"X-Razorpay-Signature: {RAZORPAY_SIGNATURE}", [RAZORPAY_SIGNATURE]),
        "razorpay signature, upper case": (
            f"signature {RAZORPAY_SIGNATURE.upper()}",
            [RAZORPAY_SIGNATURE.upper()],
        ),
        # Issue 27: what passed the filter unchanged before.
        "database URL password": (
            "cannot connect to postgresql+asyncpg://paysaga_app:Pg-pass-1@db:5432/paysaga",
            ["Pg-pass-1"],
        ),
        "razorpay key pair as Basic": (
            "Authorization: Basic cnpwX2xpdmVfMTIzNDU6a2V5LXNlY3JldC0x",
            ["cnpwX2xpdmVfMTIzNDU6a2V5LXNlY3JldC0x"],
        ),
        "a stripe live key not ours": (
            "key sk_live_51HxQwErTy123456",
            ["sk_live_51HxQwErTy123456"],
        ),
        "a restricted key not ours": ("key rk_live_51HxQwErTy654321", ["rk_live_51HxQwErTy654321"]),
        "a webhook secret not ours": (
            "whsec_OtherAccount987654321",
            ["whsec_OtherAccount987654321"],
        ),
        "an attendee's address": (
            "mail to josé.attendee@mail.example.org deferred",
            ["josé.attendee", "attendee@"],
        ),
    }


def _log_as(where: str, text: str) -> None:
    log = logging.getLogger("x")
    if where == "message":
        log.warning("rejected: " + text)
    elif where == "args":
        log.warning("rejected: %s (%s)", text, "again " + text)
    else:
        try:
            raise ValueError("rejected: " + text) from KeyError(text)
        except ValueError:
            log.exception("webhook failed")


@pytest.mark.parametrize("where", ["message", "args", "exception"])
@pytest.mark.parametrize("name", list(_secrets()))
def test_secrets_never_reach_the_output(configure: Configure, name: str, where: str) -> None:
    text, forbidden = _secrets()[name]
    stream = configure("json", secrets=[WEBHOOK_SECRET])

    _log_as(where, text)

    output = stream.getvalue()
    (line,) = json_lines(stream)
    for part in forbidden:
        assert part not in output, f"{name} written ({where}): {output}"
    assert "[redacted]" in output
    assert line["level"] == ("error" if where == "exception" else "warning")
    if where == "exception":
        # The traceback is kept (scrubbed), with both exceptions of the chain.
        assert "ValueError: rejected:" in line["error"] and "KeyError" in line["error"]
        assert line["message"] == "webhook failed"


@pytest.mark.parametrize("where", ["message", "exception"])
def test_text_format_is_redacted_too(configure: Configure, where: str) -> None:
    stream = configure("text", secrets=[WEBHOOK_SECRET])

    _log_as(where, f"{WEBHOOK_SECRET} and v1={STRIPE_SIGNATURE}")

    output = stream.getvalue()
    assert WEBHOOK_SECRET not in output and STRIPE_SIGNATURE not in output
    assert "[redacted]" in output


def test_ordinary_ids_are_not_redacted(configure: Configure) -> None:
    stream = configure("json", secrets=[WEBHOOK_SECRET, "short"])
    order = str(uuid.uuid4())

    logging.getLogger("x").info("order %s paid by pay_Q1w2E3r4T5y6 shortcut short", order)

    (line,) = json_lines(stream)
    # A secret under 8 characters is redacted as a whole word only, never inside another.
    assert line["message"] == f"order {order} paid by pay_Q1w2E3r4T5y6 shortcut [redacted]"


def test_a_badly_formatted_log_call_does_not_raise(configure: Configure) -> None:
    stream = configure("json", secrets=[WEBHOOK_SECRET])
    root = logging.getLogger()
    # Only ours: pytest's capture handler re-raises a formatting error by design.
    ours = [h for h in root.handlers if getattr(h, "stream", None) is stream]
    with patch.object(root, "handlers", ours):
        logging.getLogger("x").info("amount %d", f"not a number {WEBHOOK_SECRET}")

    (line,) = json_lines(stream)
    assert "amount %d" in line["message"] and WEBHOOK_SECRET not in stream.getvalue()


# --- ids of a workflow -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workflow_id", "expected"),
    [
        ("payment-stripe-pi_3Abc", {"transaction_id": "pi_3Abc"}),
        ("payment-razorpay-pay_A-b-c", {"transaction_id": "pay_A-b-c"}),
        ("payment-standard-txn_1", {"transaction_id": "txn_1"}),
        ("refund-razorpay-pay_R1", {"transaction_id": "pay_R1"}),
        (
            "order-6f1c1a52-8f0e-4a51-9d0c-2b8f4b1f0c11",
            {"order_id": "6f1c1a52-8f0e-4a51-9d0c-2b8f4b1f0c11"},
        ),
        # Any gateway's name (a registered one is not known here: observability is a leaf).
        ("payment-paypal-tx_1", {"transaction_id": "tx_1"}),
        ("refund-paypal-tx_1", {"transaction_id": "tx_1"}),
        ("payment-pay.pal-tx_1", {}),  # not a gateway's name
        ("payment-stripe-", {}),
        ("payment-stripe", {}),
        ("order-", {}),
        ("paysaga-mail-relay-q", {}),
        ("reconcile-paysaga", {}),
    ],
)
def test_ids_of_workflow(workflow_id: str, expected: dict[str, str]) -> None:
    assert ids_of_workflow(workflow_id) == {"workflow_id": workflow_id, **expected}


def test_confirmation_workflow_ids_round_trip() -> None:
    for provider in ("razorpay", "stripe", "standard"):
        fields = ids_of_workflow(confirmation_workflow_id(provider, "tx-9_z"))
        assert fields["transaction_id"] == "tx-9_z"


# --- the worker interceptor, on the real stack ------------------------------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def context_records() -> Iterator[list[logging.LogRecord]]:
    """Records of `paysaga.*` loggers, through our `Context` filter as a real handler runs it."""
    handler = Records()
    handler.addFilter(Context())
    logger = logging.getLogger("paysaga")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_activity_lines_carry_their_workflows_ids(
    stack: Stack, context_records: list[logging.LogRecord]
) -> None:
    """`LogContext` on the worker: an activity's plain `logging.getLogger("paysaga...")` line
    gets the workflow id and transaction id without passing them. A paid-in-full confirmation
    logs nothing from its activities, so this pays the wrong amount: `open_case` then writes the
    admins' alert line ("reconciliation case opened") from inside the activity."""
    order = await stack.place_order("razorpay", amount=10000)
    tx = f"pay_{uuid.uuid4().hex[:12]}"
    workflow_id = confirmation_workflow_id("razorpay", tx)
    event = razorpay_payment_event(order["payment"]["intent_id"], tx, 9000)

    response = await stack.post("/webhooks/razorpay", razorpay_request(event))
    assert response.json() == {"result": "accepted"}
    await stack.wait_state(workflow_id, "amount_mismatch")

    opened = [r for r in context_records if "reconciliation case opened" in r.getMessage()]
    assert [r.name for r in opened] == ["paysaga.activities"], [
        (r.name, r.getMessage()) for r in context_records
    ]
    (line,) = opened
    assert getattr(line, "workflow_id", None) == workflow_id
    assert getattr(line, "transaction_id", None) == tx
    # The webhook's own line (in the API, outside any activity) has the transaction from the
    # route's log_context, and no workflow id.
    api = [r for r in context_records if r.name == "paysaga.webhooks"]
    assert api and all(getattr(r, "transaction_id", None) == tx for r in api)
    assert not any(hasattr(r, "workflow_id") for r in api)
