"""Liveness, readiness (database and Temporal reachable, schema and search attributes as this
code needs them) and the API's Prometheus metrics."""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select

from api.auth import DepsDep
from api.deps import Deps
from api.errors import ErrorBody, Unauthorized
from api.schemas import Alive, Readiness
from db.migrate import schema_behind
from db.models import ReconciliationCase
from domain.payments import CaseKind
from domain.statuses import CaseState
from observability.metrics import API, OPEN_CASE_OLDEST_SECONDS, OPEN_CASES
from paysaga.readiness import missing_search_attributes

log = logging.getLogger("paysaga.health")
router = APIRouter()


@router.get("/healthz")
async def healthz() -> Alive:
    return Alive()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "not ready: the body names why"}},
)
async def readyz(deps: DepsDep) -> JSONResponse:
    """Ready when the database answers at this code's schema revision and Temporal answers
    with every search attribute registered (`paysaga.readiness`); else 503 naming each."""
    database, schema = await _database(deps)
    temporal, search_attributes = await _temporal(deps)
    answer = Readiness(
        ready=database == schema == temporal == "ok"
        and (search_attributes == "ok" or search_attributes.startswith("unchecked")),
        database=database,
        schema_revision=schema,
        temporal=temporal,
        search_attributes=search_attributes,
    )
    return JSONResponse(answer.model_dump(), status_code=200 if answer.ready else 503)


async def _database(deps: Deps) -> tuple[str, str]:
    try:
        async with deps.sessions() as s:
            behind = await schema_behind(s)
    except Exception as exc:  # any failure means "not ready", never a 500
        return f"unavailable: {type(exc).__name__}", "unknown"
    return "ok", behind or "ok"


async def _temporal(deps: Deps) -> tuple[str, str]:
    try:
        client = await deps.temporal()
        await client.service_client.check_health()
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}", "unknown"
    try:
        missing = await missing_search_attributes(client)
    except Exception as exc:  # not allowed to list them (a cloud key): not a reason to stop
        return "ok", f"unchecked: {type(exc).__name__}"
    return "ok", "; ".join(missing) or "ok"


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition",
        },
        401: {"model": ErrorBody, "description": "PAYSAGA_METRICS_TOKEN is set: bear it"},
    },
)
async def metrics(request: Request, deps: DepsDep) -> Response:
    """Prometheus text. Open cases are counted, and the oldest of each kind aged, at scrape
    time: the database is the truth, and a case closed by another process (the CLI, the
    worker) must not linger in a gauge. With PAYSAGA_METRICS_TOKEN set, only a scraper
    bearing it is answered (the counts tell an outsider how busy the shop is and what went
    wrong)."""
    token = deps.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise Unauthorized("metrics need the scrape token (Authorization: Bearer ...)")
    try:
        async with deps.sessions() as s:
            # The age by the database's clock, the one that stamped `opened_at`.
            age = func.extract("epoch", func.now() - func.min(ReconciliationCase.opened_at))
            rows = await s.execute(
                select(ReconciliationCase.kind, func.count(), age)
                .where(ReconciliationCase.state == CaseState.OPEN)
                .group_by(ReconciliationCase.kind)
            )
            found: dict[str, tuple[int, float]] = {
                kind: (n, float(oldest)) for kind, n, oldest in rows
            }
        for kind in {*CaseKind, *found}:
            n, oldest = found.get(kind, (0, 0.0))
            OPEN_CASES.labels(kind=str(kind)).set(n)
            OPEN_CASE_OLDEST_SECONDS.labels(kind=str(kind)).set(oldest)
    except Exception as exc:  # the other metrics still matter when the database is down
        log.warning("open cases not counted: %s", type(exc).__name__)
    return Response(generate_latest(API), media_type=CONTENT_TYPE_LATEST)
