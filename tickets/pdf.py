"""The attendee's ticket and receipt as a PDF: who paid, for what, how much, and the QR code
checked at the door.

`render_ticket_pdf` is a pure function of a `TicketDocument`: no clock, no randomness, no
I/O beyond reading the font, so the same document always gives the same bytes and the caller
can store it once and compare later.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from unicodedata import normalize

import segno
from fpdf import FPDF, FontFace
from fpdf.enums import Align, TableBordersLayout, TextMode, XPos, YPos
from fpdf.fonts import TTFFont

from domain.money import format_money
from tickets.fonts import ticket_font


@dataclass(frozen=True)
class TicketLine:
    name: str
    sku: str
    quantity: int
    unit_amount: int  # minor units of the document's currency


@dataclass(frozen=True)
class TicketDocument:
    organizer: str
    order_id: str
    ticket_code: str  # exactly what the QR code holds
    attendee_name: str | None
    attendee_email: str | None
    items: tuple[TicketLine, ...]
    amount: int  # what was paid, in minor units
    currency: str
    provider: str
    payment_reference: str
    paid_at: datetime


# Noto Sans covers Latin, Greek, Cyrillic and Vietnamese, so "Zoë", "Łukasz", "Ελένη" and
# "Дмитрий" print as typed. Only its regular instance is embedded (`tickets.fonts`: cut once
# from the variable font it ships as), and bold is drawn by stroking the outlines (_bold). A
# character it lacks (CJK, most Indic scripts) would silently vanish from the page: it is
# printed as U+FFFD instead.
_FONT = "noto"
_INK, _MUTED, _RULE, _GREEN = (33, 37, 41), (108, 117, 125), (206, 212, 218), (25, 135, 84)
# Lengths are in points. Not millimetres: fpdf2 2.8 writes the stroke width of text (see
# _bold) without converting it from the document's unit, which only points make harmless.
_MARGIN = 51.0  # 18 mm
_QR_SIZE = 142.0  # 50 mm of dark modules, quiet zone outside: a phone at arm's length reads it
_MONTHS = (
    "January February March April May June July August September October November December"
).split()  # not strftime("%B"): that follows the host's locale


def render_ticket_pdf(doc: TicketDocument) -> bytes:
    """One A4 page (more only when the items table needs them) with the QR code on page 1."""
    return _render(doc, ticket_font())


def _render(doc: TicketDocument, font_path: Path) -> bytes:
    paid_at, ticket_code = _utc(doc.paid_at), doc.ticket_code
    pdf = _TicketPdf(format="A4", unit="pt")
    pdf.set_margins(_MARGIN, _MARGIN, _MARGIN)
    pdf.set_auto_page_break(auto=True, margin=_MARGIN)
    pdf.c_margin = 0  # text starts at the margin, in line with the rule and the table
    # The creation date is the payment's, not now: the same document gives the same bytes.
    pdf.set_creation_date(paid_at)
    pdf.set_title(f"Ticket {doc.ticket_code}")
    pdf.set_author(doc.organizer)
    pdf.add_font(_FONT, fname=font_path)
    font = pdf.fonts[_FONT]
    doc = _displayable(doc, frozenset(font.cmap if isinstance(font, TTFFont) else ()))
    pdf.footer_text = f"Order {doc.order_id}"
    pdf.add_page()

    _heading(pdf, doc)
    _details(pdf, doc, paid_at, ticket_code)
    _items(pdf, doc)
    _total(pdf, doc)
    return bytes(pdf.output())


def _heading(pdf: FPDF, doc: TicketDocument) -> None:
    """Heading: who organises, and that this is a paid ticket."""
    with _bold(pdf, 22):
        pdf.multi_cell(0, 28, doc.organizer, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _text(pdf, 12, _GREEN)
    pdf.cell(0, 22, "Ticket  ·  Payment confirmed", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_draw_color(*_RULE)
    pdf.set_line_width(0.75)
    pdf.line(_MARGIN, pdf.get_y() + 8, pdf.w - _MARGIN, pdf.get_y() + 8)


def _details(pdf: FPDF, doc: TicketDocument, paid_at: datetime, ticket_code: str) -> None:
    """Details on the left, the QR code on the right with its code printed under it, so a
    person at the desk can type it in when a scanner fails. The QR code holds `ticket_code`
    as issued; `doc` is the displayable copy."""
    top = pdf.get_y() + 37
    qr_x = pdf.w - _MARGIN - _QR_SIZE
    quiet = _draw_qr(pdf, ticket_code, qr_x, top)
    pdf.set_xy(qr_x, top + _QR_SIZE + quiet)
    with _bold(pdf, 12):
        pdf.multi_cell(_QR_SIZE, 17, doc.ticket_code, align=Align.C)
    qr_bottom = pdf.get_y()

    pdf.set_xy(_MARGIN, top)
    details = (
        ("Attendee", doc.attendee_name or "—"),
        ("Email", doc.attendee_email or "—"),
        ("Order", doc.order_id),
        ("Paid on", f"{paid_at.day} {_MONTHS[paid_at.month - 1]} {paid_at.year}, "
                    f"{paid_at:%H:%M} UTC"),
        ("Payment reference", f"{doc.provider} · {doc.payment_reference}"),
    )  # fmt: skip
    width = qr_x - _MARGIN - 23
    for label, value in details:
        _text(pdf, 8, _MUTED)
        pdf.cell(width, 13, label.upper(), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        _text(pdf, 11, _INK)
        pdf.multi_cell(width, 16, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(7)
    pdf.set_y(max(pdf.get_y(), qr_bottom) + 17)


def _items(pdf: FPDF, doc: TicketDocument) -> None:
    """Items: fpdf2's table wraps long names and repeats its heading on a new page."""
    heading = FontFace(
        family=_FONT, emphasis="", size_pt=9, color=_MUTED, fill_color=(241, 243, 245)
    )
    _text(pdf, 10, _INK)
    with pdf.table(
        col_widths=(88, 16, 35, 35),
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
        borders_layout=TableBordersLayout.HORIZONTAL_LINES,
        headings_style=heading,
        line_height=17,
        padding=(4, 6),
        width=pdf.epw,
    ) as table:
        table.row(("Item", "Qty", "Unit price", "Amount"))
        for line in doc.items:
            unit, total = line.unit_amount, line.unit_amount * line.quantity
            money = (format_money(unit, doc.currency), format_money(total, doc.currency))
            table.row((line.name, str(line.quantity), *money))


def _total(pdf: FPDF, doc: TicketDocument) -> None:
    """The total is what the provider confirmed, not a sum recomputed here. It and the note
    under it move to a new page together, never leaving the note alone on one."""
    if pdf.will_page_break(100):
        pdf.add_page()
    pdf.ln(11)
    with _bold(pdf, 14):
        pdf.cell(0, 23, f"Total paid   {format_money(doc.amount, doc.currency)}", align=Align.R)
    pdf.ln(34)
    _text(pdf, 9, _MUTED)
    pdf.multi_cell(
        0, 13, "Show the QR code at registration, on paper or on screen. This page is also "
        "your receipt.", new_x=XPos.LMARGIN, new_y=YPos.NEXT
    )  # fmt: skip


class _TicketPdf(FPDF):
    footer_text = ""

    def footer(self) -> None:
        # Every page names its order, so a loose second page is still traceable.
        self.set_y(-34)
        _text(self, 8, _MUTED)
        self.cell(0, 11, f"{self.footer_text}  ·  page {self.page_no()} of {{nb}}", align=Align.C)


def _displayable(doc: TicketDocument, charset: frozenset[int]) -> TicketDocument:
    """The document as it can be printed: NFC, so that "e" + combining diaeresis is the one
    glyph "ë", and U+FFFD for each character the font cannot draw."""

    def text(value: str) -> str:
        return "".join(c if ord(c) in charset else "\ufffd" for c in normalize("NFC", value))

    return replace(
        doc,
        organizer=text(doc.organizer),
        order_id=text(doc.order_id),
        ticket_code=text(doc.ticket_code),
        attendee_name=None if doc.attendee_name is None else text(doc.attendee_name),
        attendee_email=None if doc.attendee_email is None else text(doc.attendee_email),
        items=tuple(replace(line, name=text(line.name)) for line in doc.items),
        provider=text(doc.provider),
        payment_reference=text(doc.payment_reference),
    )


def _utc(moment: datetime) -> datetime:
    """A naive time is taken as UTC (what the database stores), never as the host's zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _text(pdf: FPDF, size: float, color: tuple[int, int, int]) -> None:
    pdf.set_font(_FONT, size=size)
    pdf.set_text_color(*color)


@contextmanager
def _bold(pdf: FPDF, size: float) -> Iterator[None]:
    """Bold without a bold font: the outlines are stroked as well as filled, with a line
    4% of the font size wide (a real bold's stems are about 6% wider)."""
    _text(pdf, size, _INK)
    with pdf.local_context(text_mode=TextMode.FILL_STROKE, line_width=size * 0.04, draw_color=_INK):
        yield


def _draw_qr(pdf: FPDF, content: str, x: float, y: float) -> float:
    """Draws the QR code as vector squares (one rectangle per run of dark modules), sharp at
    any zoom and on any printer, its dark modules filling the square at (x, y). Returns the
    width of the quiet zone the layout keeps clear around it (4 modules)."""
    qr = segno.make(content, error="m", micro=False)
    module = _QR_SIZE / len(qr.matrix)
    pdf.set_fill_color(0, 0, 0)
    for r, row in enumerate(qr.matrix):
        c = 0
        for dark, run in groupby(row):
            length = len(list(run))
            if dark:
                # A hair larger than the modules, so no hairline gaps show between rows.
                pdf.rect(x + c * module, y + r * module, length * module + 0.03, module + 0.03, "F")
            c += length
    return 4 * module
