"""Every error a client can see, typed and mapped to its status in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from db.errors import is_bad_data

log = logging.getLogger("paysaga.api")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx paysaga answers itself (FastAPI's own 422 has its own shape). A field
    an error carries beyond `detail` is declared here, or the error cannot be answered."""

    model_config = ConfigDict(extra="forbid")

    detail: str
    unavailable: list[str] | None = None  # 409 for missing stock: every unavailable sku
    error: str | None = None  # 429: `hold_limit` or `rate_limit`
    held: int | None = None  # 429 hold_limit: units the customer holds awaiting payment
    limit: int | None = None  # 429: the limit passed

    def answer(self, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
        """Optional fields an error does not carry are left out, not sent as null."""
        return JSONResponse(self.model_dump(exclude_none=True), status, headers)


_MEANING = {
    400: "malformed request (or body behind a valid signature)",
    401: "missing or invalid credentials (bearer token, or the gateway's signature)",
    403: "admin role required",
    404: "not found (another customer's order is not found either)",
    409: "refused by the current state",
    413: "body over 256 KiB",
    415: "body must be application/json",
    429: "one customer's limit: units held awaiting payment, or orders a minute",
    503: "a dependency is down or busy: retry later",
}


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a router: the error answers its routes can give."""
    return {code: {"model": ErrorBody, "description": _MEANING[code]} for code in codes}


class ApiError(Exception):
    status = 400

    headers: dict[str, str] | None = None

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        # More fields of the answer (the unavailable skus of a 409), checked against the
        # documented body here, where the error is raised.
        self.body = ErrorBody.model_validate({"detail": message, **extra})


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class UnsupportedMediaType(ApiError):
    status = 415


class TooManyRequests(ApiError):
    status = 429


class Unavailable(ApiError):
    """A dependency is down; the caller (a gateway) should retry."""

    status = 503


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else exc.headers
        return exc.body.answer(exc.status, headers)

    @app.exception_handler(DBAPIError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)  # every pooled connection busy: a 503, never a 500
    @app.exception_handler(OSError)
    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        if is_bad_data(exc):  # the client's value, not the database, is the problem
            log.info("database refused a value: %s", exc)
            return ErrorBody(detail="a value cannot be stored as given").answer(400)
        log.error("database unavailable: %s", exc)
        return ErrorBody(detail="database unavailable, retry later").answer(503)

    @app.exception_handler(RPCError)
    @app.exception_handler(WorkflowUpdateRPCTimeoutOrCancelledError)
    async def _temporal_down(_: Request, exc: Exception) -> JSONResponse:
        log.error("temporal unavailable: %s", exc)
        return ErrorBody(detail="workflow service unavailable, retry later").answer(503)
