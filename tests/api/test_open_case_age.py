"""`paysaga_open_case_oldest_seconds` on the API's `/metrics` (issue 25): the age of the oldest
open case of each kind, which the alert rules in deploy/prometheus/alerts.yml compare with
PAYSAGA_UNMATCHED_ALERT_SECONDS. Read from a real database, as a scrape reads it."""

from __future__ import annotations

import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from domain.payments import CaseKind
from tests.support.stack import settings_for

OLDEST = "paysaga_open_case_oldest_seconds"


async def _open_case(
    sessions: async_sessionmaker[AsyncSession], kind: CaseKind, age_seconds: int, state: str
) -> None:
    async with sessions.begin() as s:
        await s.execute(
            text(
                "INSERT INTO reconciliation_cases"
                " (kind, provider, transaction_id, amount, currency, state, opened_at)"
                " VALUES (:kind, 'razorpay', :tx, 4900, 'INR', :state,"
                " now() - make_interval(secs => :age))"
            ),
            {
                "kind": kind.value,
                "tx": f"pay_{uuid.uuid4().hex[:12]}",
                "state": state,
                "age": age_seconds,
            },
        )


async def _scrape(database_url: str) -> dict[tuple[str, str], float]:
    app = create_app(settings_for(database_url, f"q-{uuid.uuid4()}"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://paysaga/api/v1"
    ) as http:
        answer = await http.get("/metrics")
    assert answer.status_code == 200
    return {
        (sample.name, sample.labels.get("kind", "")): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name in {OLDEST, "paysaga_open_cases"}
    }


async def test_the_oldest_open_case_of_each_kind_is_aged_and_a_kind_without_one_is_zero(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    # Two open unmatched cases (the older one counts), a fresh failed refund, and a resolved
    # case of another kind, however old, that must not count.
    await _open_case(sessions, CaseKind.UNMATCHED, 7200, "open")
    await _open_case(sessions, CaseKind.UNMATCHED, 60, "open")
    await _open_case(sessions, CaseKind.REFUND_FAILED, 0, "open")
    await _open_case(sessions, CaseKind.LATE_PAYMENT, 90000, "resolved")

    scraped = await _scrape(database_url)

    assert scraped[("paysaga_open_cases", "unmatched")] == 2
    assert 7200 <= scraped[(OLDEST, "unmatched")] < 7200 + 60
    assert 0 < scraped[(OLDEST, "refund_failed")] < 60
    # Every kind is exported, 0 when none is open (a resolved case is not waiting).
    for kind in set(CaseKind) - {CaseKind.UNMATCHED, CaseKind.REFUND_FAILED}:
        assert scraped[(OLDEST, kind.value)] == 0, kind
        assert scraped[("paysaga_open_cases", kind.value)] == 0, kind
