"""HTML to plain text for the form reader: blocks as lines, table cells as label: value."""

from __future__ import annotations

import logging
from html.parser import HTMLParser

from bot.parse.forms.doclimits import (
    MAX_DOCUMENT_BYTES,
    MAX_NESTING,
    MAX_TEXT_CHARS,
    DocumentText,
    _limited,
    row_line,
)

log = logging.getLogger("rootnotify.parse")
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
