"""Rejected webhooks (2a2) as security events, without letting a flood reach the database.

A bad signature costs the attacker a request and us a dictionary increment: the first
rejection from a (provider, source address, minute) writes its row at once, so an operator
sees an attack begin; the ones after it in that minute are counted in memory and added to
the row's `count` by one flush per second. 10,000 bad requests from one address are one row,
and they never hold a pooled connection that a real confirmation needs. Counts not yet
flushed when the process dies are lost; the log line of each rejection is not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import SecurityEvent

log = logging.getLogger("paysaga.security")

FLUSH_EVERY = 1.0


def _key(provider: str, source: str | None, minute: int) -> str:
    return f"invalid_signature:{provider}:{source or '-'}:{minute}"


@dataclass
class RejectionLog:
    sessions: async_sessionmaker[AsyncSession]
    _pending: Counter[tuple[str, str | None, int, str]] = field(default_factory=Counter)
    _written: set[str] = field(default_factory=set)
    _flusher: asyncio.Task[None] | None = None

    async def record(self, provider: str, source: str | None, reason: str, path: str) -> None:
        minute = int(time.time() // 60)
        key = _key(provider, source, minute)
        if key in self._written:
            self._count_later(provider, source, minute, path)
            return
        self._written.add(key)
        if len(self._written) > 10_000:  # keys of past minutes are never needed again
            self._written = {k for k in self._written if k.endswith(f":{minute}")} | {key}
        try:
            await self._write(provider, source, minute, path, 1, reason)
        except Exception:  # a 401 never becomes a 500 because the log table is unreachable
            log.exception("could not record security event for %s from %s", provider, source)
            self._count_later(provider, source, minute, path)  # counted by a later flush

    def _count_later(self, provider: str, source: str | None, minute: int, path: str) -> None:
        self._pending[(provider, source, minute, path)] += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        # Until nothing is left: counts added while a flush was writing are flushed next.
        while self._pending:
            await asyncio.sleep(FLUSH_EVERY)
            await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, Counter()
        for (provider, source, minute, path), n in pending.items():
            try:
                await self._write(provider, source, minute, path, n, None)
            except Exception:  # kept for the next flush, not dropped
                log.exception("could not add %d rejection(s) from %s", n, source)
                self._pending[(provider, source, minute, path)] += n

    async def _write(
        self,
        provider: str,
        source: str | None,
        minute: int,
        path: str,
        n: int,
        reason: str | None,
    ) -> None:
        row = insert(SecurityEvent).values(
            kind="invalid_signature",
            provider=provider,
            source_ip=source,
            detail={"reason": reason, "path": path, "minute": minute},
            dedupe_key=_key(provider, source, minute),
            count=n,
        )
        async with self.sessions.begin() as s:
            await s.execute(
                row.on_conflict_do_update(
                    index_elements=["dedupe_key"],
                    set_={
                        "count": SecurityEvent.count + n,
                        "last_seen_at": func.now(),
                    },
                )
            )
