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
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Protocol

log = logging.getLogger("rootnotify.parse")

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


# --- HTML ---------------------------------------------------------------------------

_BLOCK = frozenset({
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "table",
    "tr", "section", "article", "header", "footer", "blockquote", "pre", "hr", "dl", "dt",
    "dd", "form", "fieldset", "address", "caption", "tbody", "thead", "tfoot",
})
_DROP = frozenset({"script", "style", "head", "title", "template", "noscript", "svg", "object"})
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"})


class _HtmlText(HTMLParser):
    """Collects text; a table row of two cells becomes "label: value".

    Open elements are kept on a stack so that unclosed `<p>`, `<td>`, `<tr>`
    (common in hand-written mail) close when their parent does, as browsers do.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []  # pieces of the document outside tables
        self.rows: list[list[list[str]]] = []  # open table rows: cells of text pieces
        self.stack: list[str] = []
        self.overflow = 0  # elements opened beyond MAX_NESTING, read as plain text
        self.dropping = 0
        self.pre = 0
        self.size = 0

    def _emit(self, piece: str) -> None:
        self.size += len(piece)
        if self.rows and self.rows[-1]:
            self.rows[-1][-1].append(piece)
        elif self.rows:
            self.rows[-1].append([piece])  # text in a row before any cell
        else:
            self.out.append(piece)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag == "br" and not self.dropping:
                self._emit("\n")
            return
        if len(self.stack) >= MAX_NESTING:
            self.overflow += 1
            return
        if tag == "tr" and "tr" in self.stack and self._innermost("tr") > self._innermost("table"):
            self._close_to("tr")  # a new row ends an unclosed one
        self.stack.append(tag)
        if tag in _DROP:
            self.dropping += 1
        elif tag == "pre":
            self.pre += 1
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th") and self.rows:
            self.rows[-1].append([])
        elif tag in _BLOCK and not self.dropping:
            self._emit("\n")

    def _innermost(self, tag: str) -> int:
        return max((i for i, t in enumerate(self.stack) if t == tag), default=-1)

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        if self.overflow:
            self.overflow -= 1
            return
        if tag in self.stack:
            self._close_to(tag)

    def _close_to(self, tag: str) -> None:
        while self.stack:
            top = self.stack.pop()
            self._closed(top)
            if top == tag:
                return

    def _closed(self, tag: str) -> None:
        if tag in _DROP:
            self.dropping = max(0, self.dropping - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
        elif tag == "tr" and self.rows:
            line = row_line([" ".join("".join(c).split()) for c in self.rows.pop()])
            self._emit(f"\n{line}\n")
        elif tag in _BLOCK and not self.dropping:
            self._emit("\n")

    def handle_data(self, data: str) -> None:
        if self.dropping or self.size > MAX_TEXT_CHARS:
            return
        self._emit(data if self.pre else _spaced(data))

    def text(self) -> str:
        while self.stack:  # elements never closed: close them, keeping their text
            self._closed(self.stack.pop())
        lines = "".join(self.out).split("\n")
        cleaned = [" ".join(ln.split()) if ln.strip() else "" for ln in lines]
        out: list[str] = []
        for ln in cleaned:
            if not ln and (not out or not out[-1]):
                continue
            out.append(ln)
        return "\n".join(out).strip()


def _spaced(data: str) -> str:
    """Inline text with its outer whitespace reduced to one space, so words stay apart."""
    core = " ".join(data.split())
    if not core:
        return " " if data else ""
    return (" " if data[:1].isspace() else "") + core + (" " if data[-1:].isspace() else "")


def html_to_text(html: str) -> DocumentText:
    """Readable text of an HTML mail body or attachment; never raises."""
    error = None
    if len(html) > MAX_DOCUMENT_BYTES:
        html, error = html[:MAX_DOCUMENT_BYTES], "HTML too large; only the beginning was read"
    parser = _HtmlText()
    try:
        parser.feed(html)
        parser.close()
    except Exception as exc:  # html.parser is lenient; anything else is a bug to survive
        log.warning("HTML could not be fully parsed: %s", exc)
        error = error or f"HTML could not be fully read ({type(exc).__name__})"
    return _limited("html", [parser.text()], error=error)


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
