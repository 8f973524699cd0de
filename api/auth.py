"""Bearer JWTs (HS256, PAYSAGA_JWT_SECRET): `sub` is the customer id, admins carry role=admin."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request

from api.deps import Deps, get_deps
from api.errors import Forbidden, Unauthorized

log = logging.getLogger("paysaga.auth")


@dataclass(frozen=True)
class Caller:
    sub: str
    is_admin: bool


DEFAULT_TTL = 24 * 3600


def make_token(secret: str, sub: str, *, admin: bool = False, ttl: int = DEFAULT_TTL) -> str:
    """A bearer token; `exp` is always set (the API refuses tokens without one)."""
    if reserved(sub):
        raise ValueError(f"{sub!r}: a customer id cannot start with {', '.join(RESERVED_PREFIXES)}")
    claims: dict[str, str | int] = {"sub": sub, "exp": int(time.time()) + ttl}
    if admin:
        claims["role"] = "admin"
    return jwt.encode(claims, secret, algorithm="HS256")


# What a refused caller is told: nothing about why, nor about how this server is set up.
REFUSED = "missing or invalid bearer token"
# The kinds of actor the audit trail and the rules tell apart by prefix (`admin:ops`,
# `system:late_payment`, `gateway:stripe`, ...); a customer's id is written bare, so a token
# whose `sub` carries one could pass for another kind of actor, and is refused.
RESERVED_PREFIXES = ("admin:", "system:", "vendor:", "gateway:", "sweep:", "cli:", "ui:")


def reserved(sub: str) -> bool:
    return sub.lower().startswith(RESERVED_PREFIXES)


def verify_token(secret: str | None, token: str) -> dict[str, Any] | None:
    """The claims of a valid token (HS256, `sub` and `exp` present, not expired), else None;
    why it was refused is logged, never told."""
    if not secret:
        log.error("PAYSAGA_JWT_SECRET is not set: every bearer token is refused")
        return None
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub", "exp"]}
        )
    except jwt.PyJWTError as exc:
        log.info("bearer token refused: %s", exc)
        return None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        return None
    if reserved(sub):
        log.warning("bearer token refused: sub %r carries a reserved actor prefix", sub[:64])
        return None
    return claims


def bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    return token if scheme.lower() == "bearer" and token else None


async def current_caller(request: Request, deps: Annotated[Deps, Depends(get_deps)]) -> Caller:
    # Verified by the edge (api.limits) before the body was read; decoded here only for a
    # route the edge does not guard.
    claims: dict[str, Any] | None = getattr(request.state, "claims", None)
    if claims is None:
        token = bearer(request.headers.get("authorization", ""))
        claims = None if token is None else verify_token(deps.settings.jwt_secret, token)
    if claims is None:
        raise Unauthorized(REFUSED)
    sub = claims["sub"]
    return Caller(sub=sub, is_admin=claims.get("role") == "admin")


async def admin_caller(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    if not caller.is_admin:
        raise Forbidden("admin role required")
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]
DepsDep = Annotated[Deps, Depends(get_deps)]
