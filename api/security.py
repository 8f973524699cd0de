"""Rejected webhooks (2a2) as security events, without letting a flood reach the database.

A bad signature costs the attacker a request and us a dictionary increment. Rejections are
aggregated per provider, route (a webhook or a checkout return) and minute: the first of a
minute writes that minute's row at once, so an operator sees an attack begin; the ones after
it are counted in memory and added to the row's `count` by one flush per second. Which
addresses sent them is kept as a bounded top list (`detail.top_sources`), counted with the
Space-Saving algorithm over at most `TRACKED` addresses a row: a flood from 20,000 addresses
(IPv6 makes them free) is one row, costs no database work per new address, and holds
bounded memory. Counts not yet flushed when the process dies are lost; the log line of each
rejection is not. With several API processes each adds its counts to the same row, and the
top list is the last writer's view.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import SecurityEvent

log = logging.getLogger("paysaga.security")

FLUSH_EVERY = 1.0
TRACKED = 200  # addresses counted per row (their counts are upper bounds)
TOP = 20  # addresses written into the row, most frequent first


def _key(provider: str, path: str, minute: int) -> str:
    return f"invalid_signature:{provider}:{path}:{minute}"


@dataclass
class _Minute:
    """One provider's rejections in one minute."""

    reason: str
    path: str
    written: bool = False  # its row exists
    pending: int = 0  # counted, not yet added to the row
    sources: dict[str, int] = field(default_factory=dict)

    def saw(self, source: str | None) -> None:
        """Space-Saving: a new address past `TRACKED` takes the place of the least counted
        one, with its count plus one, so a heavy sender is never lost among many light ones."""
        address = source or "-"
        if address in self.sources or len(self.sources) < TRACKED:
            self.sources[address] = self.sources.get(address, 0) + 1
            return
        least = min(self.sources, key=self.sources.__getitem__)
        self.sources[address] = self.sources.pop(least) + 1

    def top(self) -> list[dict[str, object]]:
        ranked = sorted(self.sources.items(), key=lambda item: item[1], reverse=True)[:TOP]
        return [{"source": source, "count": n} for source, n in ranked]


@dataclass
class RejectionLog:
    sessions: async_sessionmaker[AsyncSession]
    _minutes: dict[tuple[str, str, int], _Minute] = field(default_factory=dict)
    _flusher: asyncio.Task[None] | None = None

    async def record(self, provider: str, source: str | None, reason: str, path: str) -> None:
        minute = int(time.time() // 60)
        current = self._minutes.get((provider, path, minute))
        if current is None:
            # This minute and the last are kept, and any with counts not yet written (the
            # database down): memory stays bounded by providers and routes.
            self._minutes = {
                k: v for k, v in self._minutes.items() if k[2] >= minute - 1 or v.pending
            }
            current = self._minutes[(provider, path, minute)] = _Minute(reason, path)
        current.saw(source)
        if current.written:
            self._count_later(current)
            return
        current.written = True
        try:
            await self._write(provider, path, minute, current, 1)
        except Exception:  # a 401 never becomes a 500 because the log table is unreachable
            log.exception("could not record security event for %s from %s", provider, source)
            self._count_later(current)  # counted by a later flush

    def _count_later(self, minute: _Minute) -> None:
        minute.pending += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        # Until nothing is left: counts added while a flush was writing are flushed next.
        while any(m.pending for m in self._minutes.values()):
            await asyncio.sleep(FLUSH_EVERY)
            await self.flush()

    async def flush(self) -> None:
        for (provider, path, minute), current in list(self._minutes.items()):
            n, current.pending = current.pending, 0
            if not n:
                continue
            try:
                await self._write(provider, path, minute, current, n)
            except Exception:  # kept for the next flush, not dropped
                log.exception("could not add %d rejection(s) for %s", n, provider)
                current.pending += n

    async def _write(self, provider: str, path: str, minute: int, current: _Minute, n: int) -> None:
        detail = {
            "reason": current.reason,
            "path": current.path,
            "minute": minute,
            "top_sources": current.top(),
        }
        row = insert(SecurityEvent).values(
            kind="invalid_signature",
            provider=provider,
            source_ip=None,
            detail=detail,
            dedupe_key=_key(provider, path, minute),
            count=n,
        )
        async with self.sessions.begin() as s:
            await s.execute(
                row.on_conflict_do_update(
                    index_elements=["dedupe_key"],
                    set_={
                        "count": SecurityEvent.count + n,
                        "detail": row.excluded.detail,
                        "last_seen_at": func.now(),
                    },
                )
            )
