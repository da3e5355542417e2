"""What every document reader shares: the limits it keeps to, its result types, its line shape."""

from __future__ import annotations

from dataclasses import dataclass

# A filled form is tens of kilobytes, a scanned PDF a few megabytes; anything
# larger is not a form and is not opened at all.
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024


# As much text as any form could hold, many times over; the form parser reads no more.
MAX_TEXT_CHARS = 512_000


# A notification is a page or two; the limit only stops a thousand-page PDF.
MAX_PDF_PAGES = 50
MAX_PDF_FIELDS = 500


# A .docx is a zip: its XML, unpacked, must stay small (a zip bomb is tiny packed).
MAX_DOCX_UNPACKED_BYTES = 50 * 1024 * 1024
MAX_DOCX_PARTS = 2_000


# Nesting deeper than this is generated, not written; deeper tags are read as
# plain text so that 10,000 nested tables cost no more than their text.
MAX_NESTING = 64
MAX_DOCX_TABLE_DEPTH = 8
TEXT_EXTENSIONS = frozenset({"txt", "text", "md", "markdown", "asc"})
HTML_EXTENSIONS = frozenset({"html", "htm", "xhtml"})


@dataclass(frozen=True)
class PdfField:
    name: str  # the fully qualified field name, e.g. "form1.ca_name"
    tooltip: str  # the field's /TU (what a viewer shows as its label), or ""
    value: str


@dataclass(frozen=True)
class DocumentText:
    kind: str  # "html", "docx", "pdf", "text" or "unknown"
    text: str
    fields: tuple[PdfField, ...] = ()  # filled PDF form fields, if any
    error: str | None = None  # what could not be read, for the person
    truncated: bool = False  # a limit was reached; `text` is the beginning


def _limited(kind: str, parts: list[str], fields: tuple[PdfField, ...] = (),
             error: str | None = None) -> DocumentText:
    text = "\n".join(parts)
    truncated = len(text) > MAX_TEXT_CHARS
    if truncated:
        text = text[:MAX_TEXT_CHARS]
        error = error or f"longer than {MAX_TEXT_CHARS:,} characters; only the beginning was read"
    return DocumentText(kind, text, fields, error, truncated)


def row_line(cells: list[str]) -> str:
    """A table row as one line: two cells are a label and its answer, more are joined."""
    cells = [c for c in cells if c]
    if len(cells) == 2:
        return f"{cells[0].rstrip(':')}: {cells[1]}"
    return " | ".join(cells)
