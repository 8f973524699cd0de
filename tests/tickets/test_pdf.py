"""The ticket PDF looked at as a person and a door scanner would: rendered to an image, its
QR code decoded, its text read back."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pypdfium2 as pdfium  # type: ignore[import-untyped]  # ships no py.typed
import pytest
import zxingcpp

from domain.money import format_money
from tickets.pdf import TicketDocument, TicketLine, render_ticket_pdf


def ticket(**changes: object) -> TicketDocument:
    doc = TicketDocument(
        organizer="PyCon India 2026",
        order_id="ord_01HZX8K4T6Q9",
        ticket_code="PYC26-7K4Q-M2XD",
        attendee_name="Zoë Ångström",
        attendee_email="zoe.angstrom@example.org",
        items=(
            TicketLine("Conference pass — Early bird", "CONF-EB", 1, 39900),
            TicketLine("Workshop: Async Python", "WS-ASYNC", 2, 5000),
        ),
        amount=49900,
        currency="INR",
        provider="razorpay",
        payment_reference="pay_Nx8QwZ3kLmP0aB",
        paid_at=datetime(2026, 3, 14, 9, 26, tzinfo=UTC),
    )
    return dataclasses.replace(doc, **changes)  # type: ignore[arg-type]


def pages(pdf: bytes) -> list[str]:
    """Each page's text with runs of white space made one space, so wrapped cells read whole."""
    document = pdfium.PdfDocument(pdf)
    return [" ".join(page.get_textpage().get_text_bounded().split()) for page in document]


def codes_on_first_page(pdf: bytes) -> list[tuple[str, str]]:
    """Every barcode a scanner finds on page 1, as (format, text)."""
    image = pdfium.PdfDocument(pdf)[0].render(scale=3).to_pil()
    return [(code.format.name, code.text) for code in zxingcpp.read_barcodes(image)]


def test_the_qr_code_holds_exactly_the_ticket_code() -> None:
    pdf = render_ticket_pdf(ticket())

    assert codes_on_first_page(pdf) == [("QRCode", "PYC26-7K4Q-M2XD")]


def test_a_long_ticket_code_still_scans() -> None:
    code = "https://tickets.example.org/check-in/" + "A1B2C3D4E5" * 8

    assert codes_on_first_page(render_ticket_pdf(ticket(ticket_code=code))) == [("QRCode", code)]


def test_the_page_says_who_paid_what_and_how() -> None:
    pdf = render_ticket_pdf(ticket())
    [text] = pages(pdf)

    for expected in (
        "PyCon India 2026",
        "Payment confirmed",
        "Zoë Ångström",
        "zoe.angstrom@example.org",
        "Conference pass — Early bird",
        "Workshop: Async Python",
        "INR 399.00",
        "INR 100.00",  # 2 x INR 50.00
        "INR 499.00",
        "razorpay",
        "pay_Nx8QwZ3kLmP0aB",
        "ord_01HZX8K4T6Q9",
        "14 March 2026, 09:26 UTC",
        "PYC26-7K4Q-M2XD",
    ):
        assert expected in text


@pytest.mark.parametrize("name", ["Łukasz Wiśniewski", "Ελένη Παπαδοπούλου", "Дмитрий Иванов"])
def test_names_in_any_script_the_font_has_are_printed_as_typed(name: str) -> None:
    [text] = pages(render_ticket_pdf(ticket(attendee_name=name)))

    assert name in text


def test_a_missing_name_and_email_show_a_dash() -> None:
    [text] = pages(render_ticket_pdf(ticket(attendee_name=None, attendee_email=None)))

    assert "ATTENDEE — EMAIL — ORDER ord_01HZX8K4T6Q9" in text


def test_the_paid_time_is_shown_in_utc() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    paid_at = datetime(2026, 3, 14, 14, 56, tzinfo=ist)
    [text] = pages(render_ticket_pdf(ticket(paid_at=paid_at)))

    assert "14 March 2026, 09:26 UTC" in text


def test_the_same_document_gives_the_same_bytes() -> None:
    assert render_ticket_pdf(ticket()) == render_ticket_pdf(ticket())


def test_another_ticket_code_gives_other_bytes() -> None:
    assert render_ticket_pdf(ticket()) != render_ticket_pdf(ticket(ticket_code="PYC26-0000-0000"))


def test_sixty_items_flow_onto_more_pages_and_the_qr_code_still_scans() -> None:
    items = tuple(
        TicketLine(f"Sponsor booth add-on number {i} with a rather long name", f"SKU-{i}", i, 100)
        for i in range(1, 61)
    )
    pdf = render_ticket_pdf(ticket(items=items, amount=sum(i * 100 for i in range(1, 61))))
    texts = pages(pdf)

    assert len(texts) > 1
    assert codes_on_first_page(pdf) == [("QRCode", "PYC26-7K4Q-M2XD")]
    everything = "\n".join(texts)
    for i in (1, 30, 60):
        assert f"Sponsor booth add-on number {i} with a rather long name" in everything
    assert "INR 1,830.00" in texts[-1]  # the total, after the last item


def test_text_stays_inside_the_page() -> None:
    long = "Extraordinarily-long-organisation-name-without-any-spaces-at-all " * 3
    pdf = render_ticket_pdf(
        ticket(
            organizer=long,
            attendee_name="Z" * 120,
            attendee_email="e" * 120 + "@example.org",
            items=(TicketLine("X" * 300, "X", 1, 2**62),),
            amount=2**62,
        )
    )
    document = pdfium.PdfDocument(pdf)

    for page in document:
        width, height = page.get_size()
        textpage = page.get_textpage()
        for index in range(textpage.count_chars()):
            left, bottom, right, top = textpage.get_charbox(index)
            assert 0 <= left and right <= width and 0 <= bottom and top <= height


def test_characters_the_font_lacks_show_as_replacement_marks_not_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pdf = render_ticket_pdf(ticket(attendee_name="李小龍 Lee"))

    assert codes_on_first_page(pdf) == [("QRCode", "PYC26-7K4Q-M2XD")]
    assert "ATTENDEE \ufffd\ufffd\ufffd Lee EMAIL" in pages(pdf)[0]
    assert "missing" not in caplog.text  # fpdf2's warning for glyphs it could not draw


def test_a_decomposed_accent_prints_as_one_letter() -> None:
    [text] = pages(render_ticket_pdf(ticket(attendee_name="Zoe\u0308 A\u030angstro\u0308m")))

    assert "Zoë Ångström" in text


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (49900, "INR", "INR 499.00"),
        (0, "INR", "INR 0.00"),
        (5, "usd", "USD 0.05"),
        (123456789012, "EUR", "EUR 1,234,567,890.12"),
        (1500, "JPY", "JPY 1,500"),
        (0, "JPY", "JPY 0"),
        (1234567, "KRW", "KRW 1,234,567"),
        (1234567, "KWD", "KWD 1,234.567"),
        (0, "BHD", "BHD 0.000"),
        (7, "OMR", "OMR 0.007"),
        (2**63 - 1, "INR", "INR 92,233,720,368,547,758.07"),
        (-250, "INR", "INR -2.50"),
    ],
)
def test_format_money(amount: int, currency: str, expected: str) -> None:
    assert format_money(amount, currency) == expected
