"""The integrity campaign's stack: the fault tests' real processes (embedded PostgreSQL that
is really stopped, a Temporal dev server, a worker subprocess that is really killed), with a
short payment window and short retry timings. Razorpay is online, against the Razorpay test
server (`tests.support.razorpay_server`): checkout creates Razorpay orders there, checkout
returns are looked up there, authorizations are captured there (issue 26). Its refunds are
answered `pending`, so, as with Stripe and Standard (offline), a refund waits for the
gateway's refund notice, which the campaign sends.

Hypothesis runs synchronously, so the stack is an async context manager the test enters on
its own event loop once, for every example of the campaign."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.razorpay_server import RazorpayApiServer

KEY_ID, KEY_SECRET = "rzp_test_integrity", "rzp_key_secret_for_integrity_returns"
WINDOW_SECONDS = int(os.environ.get("PAYSAGA_INTEGRITY_WINDOW_SECONDS", "10"))
# A vendor's time to accept (issue 28): long enough that accept and reject are drawn before
# most windows end, short enough that many end within a campaign.
ACCEPT_SECONDS = int(os.environ.get("PAYSAGA_INTEGRITY_ACCEPT_SECONDS", "20"))


@pytest.fixture(scope="session")
def razorpay_api() -> Iterator[RazorpayApiServer]:
    server = RazorpayApiServer(KEY_ID, KEY_SECRET)
    server.refunds_pending = True  # the refund notice is the campaign's `gateway_refunds`
    yield server
    server.close()


@pytest.fixture
def fault_env(razorpay_api: RazorpayApiServer) -> dict[str, str]:
    """The fault tests' timing (first phase 8 s, a slow loop of 2 to 4 s), a payment window
    and a vendor's acceptance window short enough to end within a campaign, and Razorpay
    online."""
    return {
        "PAYSAGA_RETRY_FIRST_PHASE_SECONDS": "8",
        "PAYSAGA_RETRY_FAST_MAX_SECONDS": "1",
        "PAYSAGA_RETRY_SLOW_INITIAL_SECONDS": "2",
        "PAYSAGA_RETRY_SLOW_MAX_SECONDS": "4",
        "PAYSAGA_PAYMENT_WINDOW_SECONDS": str(WINDOW_SECONDS),
        "PAYSAGA_VENDOR_ACCEPT_SECONDS": str(ACCEPT_SECONDS),
        "PAYSAGA_RAZORPAY_KEY_ID": KEY_ID,
        "PAYSAGA_RAZORPAY_KEY_SECRET": KEY_SECRET,
        "PAYSAGA_RAZORPAY_API_BASE": razorpay_api.url,
    }
