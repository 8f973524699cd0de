"""Rendering tickets in other processes, so that PDFs render in parallel.

A ticket takes about 50 ms of pure-Python CPU (fpdf2, fontTools, segno) and holds the GIL
throughout: threads render one at a time, however many senders wait. A small process pool
renders several at once and keeps the worker's event loop (its workflows and activities)
responsive meanwhile. Processes are spawned (not forked: the worker runs threads), once per
process that renders, and reused; `processes=0` renders in a thread instead.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from functools import cache

from tickets.fonts import ticket_font
from tickets.pdf import TicketDocument, render_ticket_pdf


@cache
def _pool(processes: int) -> ProcessPoolExecutor:
    ticket_font()  # cut here once, before the children look for it
    return ProcessPoolExecutor(
        max_workers=processes, mp_context=multiprocessing.get_context("spawn")
    )


async def render(doc: TicketDocument, processes: int) -> bytes:
    if processes <= 0:
        return await asyncio.to_thread(render_ticket_pdf, doc)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(processes), render_ticket_pdf, doc)
