"""The integrity campaign's stack: the fault tests' real processes (embedded PostgreSQL that
is really stopped, a Temporal dev server, a worker subprocess that is really killed), with a
short payment window and short retry timings, and the key secret that verifies Razorpay
checkout returns (offline mode otherwise: refunds wait for the gateway's refund notice).

Hypothesis runs synchronously, so the stack is an async context manager the test enters on
its own event loop once, for every example of the campaign."""

from __future__ import annotations

import os

import pytest

KEY_SECRET = "rzp_key_secret_for_integrity_returns"
WINDOW_SECONDS = int(os.environ.get("PAYSAGA_INTEGRITY_WINDOW_SECONDS", "10"))


@pytest.fixture
def fault_env() -> dict[str, str]:
    """The fault tests' timing (first phase 8 s, a slow loop of 2 to 4 s), a payment window
    short enough to expire within a campaign, and checkout returns verified."""
    return {
        "PAYSAGA_RETRY_FIRST_PHASE_SECONDS": "8",
        "PAYSAGA_RETRY_FAST_MAX_SECONDS": "1",
        "PAYSAGA_RETRY_SLOW_INITIAL_SECONDS": "2",
        "PAYSAGA_RETRY_SLOW_MAX_SECONDS": "4",
        "PAYSAGA_PAYMENT_WINDOW_SECONDS": str(WINDOW_SECONDS),
        "PAYSAGA_RAZORPAY_KEY_SECRET": KEY_SECRET,
    }
