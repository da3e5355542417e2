"""Text out of an attachment or an HTML body (HTML, .docx, PDF, plain text), within named limits.

Every reader returns a `DocumentText`; none raises. What could not be read
(corrupt, encrypted, too large, an unknown format) is said in `error`, and
whatever was read before a limit was reached is kept. The limits bound work
by size and count, never by the clock: a hostile attachment costs at most
what a large honest one would.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable
from typing import Protocol

from bot.parse.forms.doclimits import (
    HTML_EXTENSIONS,
    MAX_DOCUMENT_BYTES,
    MAX_DOCX_PARTS,
    MAX_DOCX_TABLE_DEPTH,
    MAX_DOCX_UNPACKED_BYTES,
    MAX_NESTING,
    MAX_PDF_FIELDS,
    MAX_PDF_PAGES,
    MAX_TEXT_CHARS,
    TEXT_EXTENSIONS,
    DocumentText,
    PdfField,
    _limited,
    row_line,
)
from bot.parse.forms.htmltext import html_to_text

# Callers import the limits, the result types and every reader from here, as before the split.
__all__ = [
    "HTML_EXTENSIONS", "MAX_DOCUMENT_BYTES", "MAX_NESTING", "MAX_PDF_PAGES", "MAX_TEXT_CHARS",
    "TEXT_EXTENSIONS", "DocumentText", "PdfField", "decode_text", "docx_to_text",
    "extract_attachment_text", "extract_text", "html_to_text", "pdf_to_text", "row_line",
]

log = logging.getLogger("rootnotify.parse")


# --- HTML ---------------------------------------------------------------------------


# --- .docx --------------------------------------------------------------------------


def _docx_guard(data: bytes) -> str | None:
    """Why this .docx must not be opened, or None."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_DOCX_PARTS:
                return f"the .docx has more than {MAX_DOCX_PARTS} parts"
            if sum(i.file_size for i in infos) > MAX_DOCX_UNPACKED_BYTES:
                return "the .docx unpacks to more than 50 MB"
            if "word/document.xml" not in zf.namelist():
                return "not a Word document (no word/document.xml)"
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return f"the .docx is corrupt ({exc})"
    return None


def _docx_table_lines(table: object, depth: int, out: list[str]) -> None:
    if depth > MAX_DOCX_TABLE_DEPTH:
        return
    for row in table.rows:  # type: ignore[attr-defined]
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell is listed once per grid column
                continue
            seen.add(id(cell._tc))
            cells.append("\n".join(p.text for p in cell.paragraphs).strip())
            for inner in cell.tables:
                _docx_table_lines(inner, depth + 1, out)
        if any(cells):
            out.append(row_line(cells))


def docx_to_text(data: bytes) -> DocumentText:
    """Paragraphs and table rows ("cell1: cell2") of a .docx, in document order."""
    reason = _docx_guard(data)
    if reason:
        return DocumentText("docx", "", error=reason)
    try:
        import docx
        from docx.table import Table
        from docx.text.paragraph import Paragraph

        document = docx.Document(io.BytesIO(data))
        out: list[str] = []
        size = 0

        def walk(parent_element: object, parent: object) -> None:
            nonlocal size
            for child in parent_element.iterchildren():  # type: ignore[attr-defined]
                if size > MAX_TEXT_CHARS:
                    return
                tag = child.tag.rsplit("}", 1)[-1]
                if tag == "p":
                    out.append(Paragraph(child, parent).text)
                elif tag == "tbl":
                    _docx_table_lines(Table(child, parent), 0, out)
                elif tag == "sdt":  # a content control: the form's fill-in box
                    for content in child.iterchildren():
                        if content.tag.endswith("}sdtContent"):
                            walk(content, parent)
                size = sum(len(x) for x in out[-3:]) + size

        walk(document.element.body, document)
    except Exception as exc:  # python-docx/lxml raise many types on broken files
        return DocumentText("docx", "", error=f"the .docx could not be read ({type(exc).__name__})")
    return _limited("docx", out)


# --- PDF ----------------------------------------------------------------------------


def _pdf_fields(reader: object) -> tuple[PdfField, ...]:
    raw = reader.get_fields() or {}  # type: ignore[attr-defined]
    fields = []
    for name, spec in list(raw.items())[:MAX_PDF_FIELDS]:
        value = spec.get("/V")
        if value is None or isinstance(value, (list, dict)):
            continue
        text = str(value).strip()
        if text.startswith("/"):  # a name object: a checkbox or radio state
            text = text[1:]
        if text and text != "Off":
            fields.append(PdfField(str(name), str(spec.get("/TU") or ""), text))
    return tuple(fields)


def pdf_to_text(data: bytes) -> DocumentText:
    """A PDF's filled form fields, and its page text (the first `MAX_PDF_PAGES`)."""
    try:
        from pypdf import PdfReader

        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            # An owner password alone restricts editing, not reading: the empty
            # user password opens it. Anything else we cannot read.
            try:
                opened = reader.decrypt("")
            except Exception:
                opened = 0
            if not opened:
                return DocumentText("pdf", "", error="the PDF is encrypted with a password")
        fields = _pdf_fields(reader)
        parts: list[str] = []
        size = 0
        pages = reader.pages
        error = None
        if len(pages) > MAX_PDF_PAGES:
            error = f"the PDF has {len(pages)} pages; only the first {MAX_PDF_PAGES} were read"
        for i in range(min(len(pages), MAX_PDF_PAGES)):
            if size > MAX_TEXT_CHARS:
                break
            try:
                page_text = pages[i].extract_text() or ""
            except Exception as exc:  # one broken page must not lose the others
                error = error or f"page {i + 1} could not be read ({type(exc).__name__})"
                continue
            parts.append(page_text)
            size += len(page_text)
    except Exception as exc:  # pypdf raises many types on corrupt input
        return DocumentText("pdf", "", error=f"the PDF could not be read ({type(exc).__name__})")
    return _limited("pdf", parts, fields, error)


# --- plain text and dispatch --------------------------------------------------------


def decode_text(data: bytes) -> str:
    """Bytes of a text file as text: BOM, then UTF-8, then Windows-1252 (what CAs send)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _kind(filename: str, content_type: str, data: bytes) -> str:
    ext = filename.lower().rsplit(".", 1)[-1] if "." in filename else ""
    ctype = content_type.lower()
    if ext == "pdf" or ctype == "application/pdf" or data[:5] == b"%PDF-":
        return "pdf"
    if ext == "docx" or "wordprocessingml" in ctype:
        return "docx"
    if ext in HTML_EXTENSIONS or ctype == "text/html":
        return "html"
    if ext in TEXT_EXTENSIONS or ctype in ("text/plain", "text/markdown"):
        return "text"
    if data[:4] == b"PK\x03\x04" and b"word/" in data[:2048]:
        return "docx"
    return "unknown"


# Bytes `_kind` looks at, at most.
KIND_HEAD_BYTES = 2048


class _Attached(Protocol):
    filename: str
    content_type: str

    @property
    def size(self) -> int: ...

    @property
    def data(self) -> bytes: ...

    def head(self, size: int) -> bytes: ...


def extract_attachment_text(att: _Attached) -> DocumentText:
    """`extract_text` of an attachment, which reads its bytes only when it is a document.

    A certificate list is neither text nor a document here: its kind, size
    and the answer come from its first bytes and its length, so a large one
    lifted out of the message (bot.parse.mail.largeparts) is not decoded for it.
    """
    return _extract(att.filename, att.content_type, att.size, att.head(KIND_HEAD_BYTES),
                    lambda: att.data)


def extract_text(filename: str, content_type: str, data: bytes) -> DocumentText:
    """The text (and PDF form fields) of one attachment; never raises."""
    return _extract(filename, content_type, len(data), data[:KIND_HEAD_BYTES], lambda: data)


def _extract(filename: str, content_type: str, size: int, head: bytes,
             load: Callable[[], bytes]) -> DocumentText:
    kind = _kind(filename, content_type, head)
    if size > MAX_DOCUMENT_BYTES:
        return DocumentText(kind, "", error=f"too large to be a form ({size:,} bytes; "
                            f"the limit is {MAX_DOCUMENT_BYTES:,}); not opened")
    if kind == "unknown":
        return DocumentText("unknown", "", error=f"format not read ({content_type or 'unknown'});"
                            " a form can be sent as text, .docx, PDF or HTML")
    data = load()
    if kind == "pdf":
        return pdf_to_text(data)
    if kind == "docx":
        return docx_to_text(data)
    if kind == "html":
        return html_to_text(decode_text(data))
    return _limited("text", [decode_text(data)])
