"""The bench's own logic, without a stack (well under a second): when a ramp step holds, the
drop's mailbox, and the report's derived figures and page."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from typing import Any

from bench.mailbox import TICKET, mail_server
from bench.plan import QUICK
from bench.ramp import half, held
from bench.report import derive, markdown


def test_a_step_holds_only_if_every_order_is_paid_in_time_without_errors() -> None:
    ok = {"errors": 0, "late": 0, "incomplete": 0}
    assert held(ok)
    assert not held(ok | {"late": 1})
    assert not held(ok | {"incomplete": 1})
    assert not held(ok | {"errors": 1})
    assert half(20.0, QUICK) == 10.0
    # Not even the first step held: half of half of it, below anything the ramp offered.
    assert half(None, QUICK) == QUICK.steps[0] / 4


def _mail(order: str, kind: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "t@example.com", "a@example.com", "x"
    message["X-Paysaga-Order"], message["X-Paysaga-Notification"] = order, kind
    message.set_content("hello")
    return message


def test_the_mailbox_notes_each_ticket_mail_by_order_and_arrival() -> None:
    with mail_server() as (box, port), smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        for order, kind in (("o1", TICKET), ("o2", TICKET), ("o1", TICKET), ("o3", "refunded")):
            smtp.send_message(_mail(order, kind))
    tickets = box.tickets()
    assert set(tickets) == {"o1", "o2"}
    assert box.duplicates() == 1
    assert box.kinds() == {TICKET: 3, "refunded": 1}
    first_o1 = min(a.at for a in box.arrivals if a.order_id == "o1")
    assert tickets["o1"] == first_o1


def _percentiles(p99: float) -> dict[str, float]:
    return {"p50": p99 / 4, "p95": p99 / 2, "p99": p99, "max": p99}


def _results() -> dict[str, Any]:
    step = {
        "offered_rate": 10.0,
        "held": True,
        "ack_ms": _percentiles(50),
        "e2e_ms": _percentiles(400),
        "completion_rate": 10.0,
        "incomplete": 0,
        "late": 0,
        "errors": 0,
    }
    at_half = step | {
        "offered_rate": 5.0,
        "webhooks": 100,
        "completed": 100,
        "cpu_ms_per_paid_order": {"worker": 40.0, "temporal": 50.0, "api": 10.0, "postgres": 5.0},
        "cpu_ms_per_paid_order_total": 105.0,
        "cpu_window_s": 25.0,
        "idle_cpu_ms_per_s": {"temporal": 20.0},
        "checkout_alone_ms": _percentiles(150),
        "checkout_alone_orders": 100,
    }
    failed = step | {"offered_rate": 20.0, "held": False, "late": 3}
    return {
        "engine_ceilings": {
            "workflows": 300,
            "in_flight": 50,
            "limit_s": 12,
            "five_noop": 40.0,
            "confirmation_shape": 30.0,
            "with_order": 20.0,
        },
        "ramp": {"steps": [step, failed], "capacity": 10.0, "hold_s": 4},
        "half_capacity": at_half,
        "beside": at_half | {"checkout_ms": _percentiles(250), "checkout_orders": 80},
        "checkout_one_at_a_time": {
            "orders": 30,
            "ms": _percentiles(50),
            "workflows_per_checkout": 1.0,
        },
        "plain": None,
        "parked": None,
        "peak_rss_mb": {"worker": 150.0, "api": 160.0},
    }


def test_the_report_states_capacity_against_the_five_noop_ceiling_after_the_cpu_table() -> None:
    results = _results()
    derived = derive(results)
    assert derived["capacity_vs_five_noop"] == 0.25
    assert derived["workflow_per_order"] is True
    report = {
        "started": "now",
        "mode": "quick",
        "seconds": 1.0,
        "machine": "2 cores",
        "results": results,
        "derived": derived,
        "plot": "x.png",
    }
    page = markdown(report)
    assert page.index("## CPU per paid order") < page.index("## Capacity")
    assert "| 40.0 | 50.0 | 10.0 | 5.0 | **105.0** |" in page
    assert "**Capacity: 10.0/s** (last step that held) = **25%**" in page
    assert "| checkout p95 <= 200 ms, 8 at once, beside confirmations | 125.0 ms | yes |" in page
