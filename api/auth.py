"""Bearer JWTs (HS256, PAYSAGA_JWT_SECRET): `sub` is the customer id (the vendor id for
vendors), admins carry role=admin, vendors role=vendor.

Three kinds of caller, each with its own routes: customers (their orders), vendors (their
orders to accept, `api.vendor`), admins (everything). A vendor's token is not a customer's:
on a customer's route it is refused (403), so a vendor id can never pass for a customer id
that happens to be spelled the same. WebSockets, which have no dependency-injected request,
authenticate with `caller_of` (the stream tells "invalid" from "not a vendor")."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request

from api.deps import Deps, get_deps
from api.errors import Forbidden, Unauthorized

log = logging.getLogger("paysaga.auth")


class Role(StrEnum):
    """The token's `role` claim; a token without one (or with any other) is a customer's."""

    CUSTOMER = "customer"
    ADMIN = "admin"
    VENDOR = "vendor"


@dataclass(frozen=True)
class Caller:
    sub: str
    role: Role = Role.CUSTOMER

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def actor(self) -> str:
        """How the audit trail names this caller when it acts as its role."""
        return self.sub if self.role == Role.CUSTOMER else f"{self.role}:{self.sub}"


DEFAULT_TTL = 24 * 3600
# A vendor id is written into actors (`vendor:acme`) and matched against products' vendor.
VENDOR_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def make_token(
    secret: str,
    sub: str,
    *,
    admin: bool = False,
    vendor: bool = False,
    ttl: int = DEFAULT_TTL,
) -> str:
    """A bearer token; `exp` is always set (the API refuses tokens without one)."""
    if admin and vendor:
        raise ValueError("a token is an admin's or a vendor's, not both")
    if reserved(sub):
        raise ValueError(f"{sub!r}: a customer id cannot start with {', '.join(RESERVED_PREFIXES)}")
    if vendor and not VENDOR_ID.match(sub):
        raise ValueError(f"{sub!r}: a vendor id is 1-64 letters, digits, '.', '_' or '-'")
    claims: dict[str, str | int] = {"sub": sub, "exp": int(time.time()) + ttl}
    if admin:
        claims["role"] = Role.ADMIN
    elif vendor:
        claims["role"] = Role.VENDOR
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


def _caller(claims: dict[str, Any]) -> Caller:
    role = claims.get("role")
    return Caller(sub=claims["sub"], role=Role(role) if role in tuple(Role) else Role.CUSTOMER)


def caller_of(secret: str | None, token: str) -> Caller | None:
    """Who a bearer token is (None: not a valid token), for what has no request to inject
    into: the vendor stream closes with 4401 on None and 4403 unless `role` is a vendor."""
    claims = verify_token(secret, token)
    return None if claims is None else _caller(claims)


def vendor_of(secret: str | None, token: str) -> str | None:
    """The vendor id of a valid vendor token, else None (see `caller_of` to tell why)."""
    caller = caller_of(secret, token)
    return caller.sub if caller is not None and caller.role == Role.VENDOR else None


async def authenticated(request: Request, deps: Annotated[Deps, Depends(get_deps)]) -> Caller:
    """Any valid token's caller, whatever its role."""
    # Verified by the edge (api.limits) before the body was read; decoded here only for a
    # route the edge does not guard.
    claims: dict[str, Any] | None = getattr(request.state, "claims", None)
    if claims is None:
        token = bearer(request.headers.get("authorization", ""))
        claims = None if token is None else verify_token(deps.settings.jwt_secret, token)
    if claims is None:
        raise Unauthorized(REFUSED)
    return _caller(claims)


async def current_caller(caller: Annotated[Caller, Depends(authenticated)]) -> Caller:
    """A customer, or an admin acting for one: the customer's routes. Not a vendor."""
    if caller.role == Role.VENDOR:
        raise Forbidden("a vendor token cannot act as a customer")
    return caller


async def admin_caller(caller: Annotated[Caller, Depends(authenticated)]) -> Caller:
    if not caller.is_admin:
        raise Forbidden("admin role required")
    return caller


async def vendor_caller(caller: Annotated[Caller, Depends(authenticated)]) -> Caller:
    """A vendor (its own orders) or an admin (every vendor's)."""
    if caller.role not in (Role.VENDOR, Role.ADMIN):
        raise Forbidden("vendor role required")
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]
VendorCaller = Annotated[Caller, Depends(vendor_caller)]
DepsDep = Annotated[Deps, Depends(get_deps)]
