"""Telling the client's data from the database's state in a database error."""

from __future__ import annotations

import asyncpg


def is_bad_data(exc: BaseException) -> bool:
    """The database (or its driver) refuses the values themselves, not because it is down:
    SQLSTATE class 22 (data exception: a NUL byte, a number out of range) or a CHECK
    violation, asyncpg's own client-side DataError (an int past int32, with no SQLSTATE), or
    text Python cannot encode (a lone surrogate). SQLAlchemy's asyncpg dialect reports most
    of these as a plain DBAPIError, so the SQLSTATE and the causes decide. The same values
    are refused on every retry: the API answers 400, an activity does not retry them."""
    if isinstance(exc, UnicodeError):
        return True
    orig = getattr(exc, "orig", None)
    sqlstate = str(getattr(orig, "sqlstate", "") or "")
    if sqlstate.startswith("22") or sqlstate == "23514":
        return True
    causes = (orig, getattr(orig, "__cause__", None), exc.__cause__, exc.__context__)
    return any(isinstance(e, (asyncpg.exceptions.DataError, UnicodeError)) for e in causes)
