"""An invoice's PDF, drawn from its stored content alone (fpdf2), so it reads the same
every time it is downloaded: same content, same bytes (the PDF's date is the issue date).

Text is set in DejaVu Sans (Debian: fonts-dejavu-core), which covers Latin, Greek and
Cyrillic; Chinese, Japanese and Korean come from Droid Sans Fallback (fonts-droid-fallback)
when it is installed. A character no installed font has prints as `?`, so a name in another
script degrades to something legible instead of vanishing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import TTFFont

from labyard.errors import RuntimeFailure
from labyard.services.countries import country_name

FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),  # Debian, Ubuntu
    Path("/usr/share/fonts/dejavu-sans-fonts"),  # Fedora
    Path("/usr/share/fonts/TTF"),  # Arch
)
FALLBACK = Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")
FONT = "dejavu"
WIDTH = 174.0
"""mm between A4's 18 mm margins."""
TITLES = {"invoice": "Invoice", "credit_note": "Credit note"}
PAID_THROUGH = {"stripe": "through Stripe", "manual": "payment recorded by the seller"}


def _font_file(name: str) -> Path:
    for folder in FONT_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise RuntimeFailure(
        "invoices cannot be drawn: the DejaVu fonts are missing (install fonts-dejavu-core)",
        detail=f"no {name} in {', '.join(str(d) for d in FONT_DIRS)}",
    )


def money(amount: int) -> str:
    """1234567 -> `12,345.67`; negative amounts keep their sign."""
    sign = "-" if amount < 0 else ""
    units, cents = divmod(abs(amount), 100)
    return f"{sign}{units:,}.{cents:02d}"


def _day(iso: str | None) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d") if iso else ""


def _texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, dict):
        for value in content.values():
            yield from _texts(value)
    elif isinstance(content, list):
        for value in content:
            yield from _texts(value)


class _Document(FPDF):
    """A4 with the fonts the content needs; `text()` swaps what no font has for `?`."""

    def __init__(self, content: dict[str, Any]) -> None:
        super().__init__(format="A4")
        self.set_margins(18, 18, 18)
        self.set_auto_page_break(True, margin=18)
        self.set_creation_date(datetime.fromisoformat(content["issued_at"]))
        self.set_title(f"{TITLES[content['kind']]} {content['number']}")
        self.add_font(FONT, "", _font_file("DejaVuSans.ttf"))
        self.add_font(FONT, "B", _font_file("DejaVuSans-Bold.ttf"))
        self._covered = self._characters(FONT)
        wanted = {c for text in _texts(content) for c in text}
        if not wanted <= self._covered and FALLBACK.is_file():
            self.add_font("fallback", "", FALLBACK)
            self.set_fallback_fonts(["fallback"], exact_match=False)
            self._covered |= self._characters("fallback")
        self._covered |= {"\n"}
        self.add_page()

    def _characters(self, font: str) -> set[str]:
        found = self.fonts[font]
        return {chr(c) for c in found.cmap} if isinstance(found, TTFFont) else set()

    def text_of(self, value: str) -> str:
        return "".join(c if c in self._covered else "?" for c in value)

    def write_line(self, value: str, size: float = 9.5, bold: bool = False) -> None:
        self.set_font(FONT, "B" if bold else "", size)
        self.cell(0, 5, self.text_of(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _party_lines(party: dict[str, str]) -> list[str]:
    lines = [line for line in party.get("address", "").split("\n") if line]
    if party.get("country"):
        lines.append(country_name(party["country"]))
    if party.get("vat_id"):
        lines.append(f"VAT ID: {party['vat_id']}")
    if party.get("email"):
        lines.append(party["email"])
    return lines


def _header(pdf: _Document, content: dict[str, Any]) -> None:
    refs = content.get("references") or {}
    pdf.write_line(f"{TITLES[content['kind']]} {content['number']}", size=16, bold=True)
    pdf.ln(1)
    facts = [f"Date: {_day(content['issued_at'])}"]
    if content.get("credits"):
        credited = content["credits"]
        facts.append(f"Credits invoice {credited['number']} of {_day(credited['issued_at'])}")
    if refs.get("order"):
        facts.append(f"Order: {refs['order']}")
    if refs.get("paid_at"):
        how = PAID_THROUGH.get(refs.get("provider", ""), refs.get("provider", ""))
        facts.append(f"Paid: {_day(refs['paid_at'])}, {how}")
    for fact in facts:
        pdf.write_line(fact)
    pdf.ln(5)


def _parties(pdf: _Document, content: dict[str, Any]) -> None:
    top = pdf.get_y()
    bottom = top
    for x, title, party in (
        (18.0, "From", content["seller"]),
        (18.0 + WIDTH / 2, "Bill to", content["buyer"]),
    ):
        pdf.set_xy(x, top)
        pdf.set_font(FONT, "", 8)
        pdf.cell(WIDTH / 2, 5, title.upper(), new_x=XPos.LEFT, new_y=YPos.NEXT)
        pdf.set_font(FONT, "B", 10)
        pdf.cell(WIDTH / 2, 5, pdf.text_of(party.get("name", "")), new_x=XPos.LEFT, new_y=YPos.NEXT)
        pdf.set_font(FONT, "", 9.5)
        for line in _party_lines(party):
            pdf.cell(WIDTH / 2, 5, pdf.text_of(line), new_x=XPos.LEFT, new_y=YPos.NEXT)
        bottom = max(bottom, pdf.get_y())
    pdf.set_xy(18, bottom + 8)


def _lines(pdf: _Document, content: dict[str, Any]) -> None:
    pdf.set_font(FONT, "", 9.5)
    with pdf.table(
        col_widths=(96, 14, 32, 32),
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
        borders_layout="HORIZONTAL_LINES",
        line_height=6,
    ) as table:
        head = table.row()
        for title in ("Description", "Qty", "Unit price", "Amount"):
            head.cell(title)
        for line in [*content["lines"], *content["discounts"]]:
            row = table.row()
            described = line["description"] + (f"\n{line['period']}" if line["period"] else "")
            row.cell(pdf.text_of(described))
            row.cell(str(line["quantity"]))
            row.cell(money(line["unit_amount"]))
            row.cell(money(line["amount"]))
    pdf.ln(4)


def _totals(pdf: _Document, content: dict[str, Any]) -> None:
    rows = [("Subtotal", money(content["subtotal"]), False)]
    for tax in content["taxes"]:
        on = f"{'incl. ' if tax['inclusive'] else ''}{tax['label']} on {money(tax['taxable'])}"
        rows.append((on, money(tax["amount"]), False))
    rows.append((f"Total ({content['currency']})", money(content["total"]), True))
    for label, amount, bold in rows:
        pdf.set_x(18 + WIDTH - 110)
        pdf.set_font(FONT, "B" if bold else "", 10 if bold else 9.5)
        pdf.cell(78, 6, pdf.text_of(label), align="R")
        pdf.cell(32, 6, f"{amount} {content['currency']}", align="R")
        pdf.ln(6)


def _notes(pdf: _Document, content: dict[str, Any]) -> None:
    pdf.ln(6)
    notes = [f"All amounts in {content['currency']}."]
    if content["taxes"] and all(tax["inclusive"] for tax in content["taxes"]):
        notes.append("Prices include tax.")
    if content.get("credits"):
        notes.append(f"This credit note cancels invoice {content['credits']['number']}.")
    email = content["seller"].get("email")
    if email:
        notes.append(f"Questions about this document: {email}")
    for note in notes:
        pdf.write_line(note, size=8.5)


def render(content: dict[str, Any]) -> bytes:
    """The PDF of an invoice or credit note from its stored content."""
    pdf = _Document(content)
    _header(pdf, content)
    _parties(pdf, content)
    _lines(pdf, content)
    _totals(pdf, content)
    _notes(pdf, content)
    return bytes(pdf.output())
