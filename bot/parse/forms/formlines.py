"""A form's text to label and value lines: bullets, tables, hints, quoted and forwarded mail."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from bot.rules.formfields import LABELS, LONGEST_LABEL, normalize_label
from bot.rules.rulesets import (
    FORM_FIELDS,
)

_BULLET = re.compile(
    r"^\s*(?:[-*•·–—+▪◦]\s+|\(?(?:\d{1,2}|[a-zA-Z]|[ivxIVX]{1,4})[.)]\s+|#{1,6}\s+)"
)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_EMPHASIS = re.compile(r"\*\*|__")
_TABLE_RULE = re.compile(r"^[\s|:+-]*$")
_PLACEHOLDER = re.compile(r"^[\s\-–—_.…?*\[\]<>]*$")


# The blank form's hints, left in place by a CA who typed the answer beside them.
_HINT_RE = re.compile(
    "|".join(re.escape(h) for h in sorted(
        {f.hint for f in FORM_FIELDS if f.hint} | {"(if known)", "(if requested)"})),
    re.I,
)
_SIGNATURE = re.compile(
    r"^(?:--\s*|(?:best|kind|warm|many)?\s*regards,?|thanks?(?: you)?,?|sincerely,?"
    r"|cheers,?|mit freundlichen grüßen,?)$",
    re.I,
)


# Where the part of a mail written by its sender ends.
_REPLY_HEADER = re.compile(
    r"^(?:On\s.{0,300}\swrote:|Am\s.{0,300}\sschrieb.{0,100}:|Le\s.{0,300}\sa écrit\s?:)\s*$",
    re.I,
)
_REPLY_HEADER_START = re.compile(r"^(?:On|Am|Le)\s.*\d", re.I)
_FORWARD_MARK = re.compile(
    r"^-{2,}\s*(?:Forwarded message|Forwarded Message|Weitergeleitete Nachricht)\s*-{2,}\s*$"
    r"|^Begin forwarded message:\s*$",
    re.I,
)
_ORIGINAL_MARK = re.compile(r"^-{2,}\s*Original Message\s*-{2,}\s*$|^_{10,}\s*$", re.I)
_HEADER_LINE = re.compile(r"^(?:From|Sent|Date|To|Cc|Subject|Von|Gesendet|An|Betreff):\s", re.I)


@dataclass
class _Open:
    keys: tuple[str, ...]
    label: str
    lines: list[str] = field(default_factory=list)


def _split_label(line: str) -> tuple[tuple[str, ...], str, str] | None:
    """(keys, label as written, value on the same line) if `line` starts with a label."""
    text = _EMPHASIS.sub("", _BULLET.sub("", line, count=1)).strip()
    if not text:
        return None
    if text.startswith("|"):
        cells = [c.strip() for c in text.strip("|").split("|")]
        keys = LABELS.get(normalize_label(cells[0])) if cells else None
        if keys:
            return keys, cells[0], " | ".join(c for c in cells[1:] if c)
        return None
    keys = LABELS.get(normalize_label(text)) if len(text) <= LONGEST_LABEL * 2 else None
    if keys:
        return keys, text, ""
    # The label ends at the first separator after it; try each kind in turn.
    for sep in (":", "?", "\t", " – ", " — ", " - ", "  "):
        head, found, tail = text.partition(sep)
        if found and len(head) <= LONGEST_LABEL * 2:
            keys = LABELS.get(normalize_label(head))
            if keys:
                return keys, head.strip(), tail.lstrip(":?").strip()
    return None


def _clean_value(lines: list[str]) -> str:
    lines = [ln.rstrip() for ln in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    out: list[str] = []
    for ln in lines:
        if ln.strip().startswith("|"):
            if _TABLE_RULE.match(ln):
                continue
            ln = " ".join(c.strip() for c in ln.strip().strip("|").split("|") if c.strip())
        if not ln.strip() and out and not out[-1].strip():
            continue  # one blank line between paragraphs is enough
        out.append(ln.strip() if len(lines) == 1 else ln)
    value = _HINT_RE.sub("", "\n".join(out))
    value = _EMPHASIS.sub("", value).strip()
    return "" if _PLACEHOLDER.match(value) else value


def _segments(text: str) -> Iterator[tuple[str, list[str]]]:
    """The mail text cut at reply and forward markers: ("top"|"forward"|"quoted", lines)."""
    kind, current = "top", []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        nxt = " ".join(ln.strip() for ln in lines[i:i + 3])
        if _FORWARD_MARK.match(stripped):
            yield kind, current
            kind, current = "forward", []
            i += 1
            continue
        if _ORIGINAL_MARK.match(stripped) or (
            re.match(r"^From:\s", stripped, re.I)
            and any(re.match(r"^(?:Sent|Date):\s", ln.strip(), re.I) for ln in lines[i + 1:i + 4])
            and kind != "forward"
        ):
            # Outlook puts the same block above a reply and a forward; which one
            # it was is decided by whether the text above it holds the form.
            yield kind, current
            kind, current = "original", []
            i += 1
            continue
        if _REPLY_HEADER.match(stripped) or (
            _REPLY_HEADER_START.match(stripped) and re.search(r"wrote:\s*$", nxt, re.I)
            and not stripped.endswith(":") and len(nxt) < 400
        ):
            yield kind, current
            kind, current = "quoted", []
            i += 1
            continue
        current.append(line)
        i += 1
    yield kind, current


def _strip_forward_headers(lines: list[str]) -> list[str]:
    """Drop the From:/Date:/Subject:/To: block that opens a forwarded mail."""
    i = 0
    while i < len(lines) and (not lines[i].strip() or _HEADER_LINE.match(lines[i].strip())):
        i += 1
    return lines[i:]


def _read_lines(lines: list[str]) -> list[_Open]:
    found: list[_Open] = []
    current: _Open | None = None
    for line in lines:
        if line.lstrip().startswith(">"):
            continue  # quoted reply text is what someone else wrote
        split = _split_label(line)
        if split:
            keys, label, value = split
            current = _Open(keys, label, [value] if value else [])
            found.append(current)
        elif current is not None:
            if _SIGNATURE.match(line.strip()):
                current = None  # the answer ended; a signature follows
            else:
                current.lines.append(line)
    return found
