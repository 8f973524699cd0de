"""Bearer JWTs (HS256, PAYSAGA_JWT_SECRET): `sub` is the customer id, admins carry role=admin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, Request

from api.deps import Deps, get_deps
from api.errors import Forbidden, Unauthorized


@dataclass(frozen=True)
class Caller:
    sub: str
    is_admin: bool


def make_token(secret: str, sub: str, *, admin: bool = False) -> str:
    claims: dict[str, str] = {"sub": sub}
    if admin:
        claims["role"] = "admin"
    return jwt.encode(claims, secret, algorithm="HS256")


async def current_caller(request: Request, deps: Annotated[Deps, Depends(get_deps)]) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token")
    secret = deps.settings.jwt_secret
    if not secret:
        raise Unauthorized("no JWT secret configured on this server")
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub"]})
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from exc
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("token has no subject")
    return Caller(sub=sub, is_admin=claims.get("role") == "admin")


async def admin_caller(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    if not caller.is_admin:
        raise Forbidden("admin role required")
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]
DepsDep = Annotated[Deps, Depends(get_deps)]
