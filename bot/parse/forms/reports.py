"""Check a final Security Incident report (R4) for the items of the ruleset.

Items are found by their number when the report numbers its headings
("1.", "1)", "Item 1", "Q1", "## 1.", "**1.**"), else by heading text: the
item's title, the seed's question (verbatim or its first sentence, punctuation
and case ignored) or a rewording from `HEADING_VARIANTS`. A heading may be a
Markdown heading, a bold line, a plain line (ending in ":" or not), a list
item, or the label of a "label: value" line as docx text gives it.

A numbered heading whose text names an item is taken for that item even when
its number says otherwise, so a 2026-02 report written on the 2019-03 template
(with "9. Log files") is read right; a heading naming an item the ruleset does
not have only ends the section before it.

An item counts as present when its section has content. A bare placeholder
("N/A", "TBD", "-") counts as missing: R4 asks for each item and a reader
learns nothing from it, while "N/A – there was no mismatch" (a reason) or
"None" (a fact) is an answer.

Never raises on any text; text in, typed result out, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.parse.forms.reportitems import HEADING_VARIANTS, PLACEHOLDERS
from bot.rules.rulesets import FINAL_REPORT_ITEMS, Ruleset

# Reports beyond this are checked on their first part only; 5 M characters
# is hundreds of pages of prose even with logs pasted inline.
MAX_REPORT_CHARS = 5_000_000
# A heading is short; only this much of a line is looked at for one. The
# longest seed question is ~230 characters.
MAX_HEADING_LINE = 400
# Section text is kept for receipts and the dossier summary; the full report
# stays in the stored message.
MAX_SECTION_CHARS = 4_000
# Contract: five items found make a mail a final report.
FINAL_REPORT_MIN_ITEMS = 5
# Fewer numbered headings than this are a stray list, not the report's structure.
NUMBERED_MIN_HEADINGS = 3
# A rewording this long names the item even before an inline
# answer without a colon ("How did the CA detect the incident? We …").
LONG_VARIANT_WORDS = 5

# How far below a numbered heading content is looked for when weighing it;
# blank lines between a heading and its text are rarely more than a few.
CONTENT_LOOKAHEAD_LINES = 50


@dataclass(frozen=True)
class ReportCheck:
    present: tuple[str, ...]  # item keys found with non-empty content, in ruleset order
    missing: tuple[str, ...]  # the others, in ruleset order
    sections: dict[str, str]  # key -> text under every heading found for it (may be "" / "N/A")
    numbered: bool  # matched by numbers


# ---------------------------------------------------------------- heading text


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", _unquote(text.lower()))


def _unquote(text: str) -> str:
    # "CA's" and "CAs" are the same word to a reader.
    return text.replace("'", "").replace("\u2019", "")


def _variants(item_key: str, title: str, question: str) -> list[str]:
    out = [title, question, *HEADING_VARIANTS.get(item_key, ())]
    first = re.split(r"(?<=[?.])\s", question, maxsplit=1)[0]
    if first != question and len(_words(first)) >= 3:
        out.append(first)
    return out


@dataclass(frozen=True)
class _Variant:
    key: str
    words: int
    regex: re.Pattern[str]


def _compile_variants() -> dict[str, list[_Variant]]:
    by_first: dict[str, list[_Variant]] = {}
    for item in FINAL_REPORT_ITEMS:
        for text in _variants(item.key, item.title, item.question):
            words = _words(text)
            body = r"[\W_]+".join(map(re.escape, words))
            rx = re.compile(rf"[\W_]*{body}(?![a-z0-9])(?P<sep>[\W_]*)", re.IGNORECASE)
            by_first.setdefault(words[0], []).append(_Variant(item.key, len(words), rx))
    for variants in by_first.values():
        variants.sort(key=lambda v: -v.words)  # the longest rewording wins
    return by_first


_VARIANTS = _compile_variants()
_FIRST_WORD = re.compile(r"[\W_]*([a-z0-9]+)", re.IGNORECASE)


def _match_label(text: str) -> tuple[str, str] | None:
    """(item key, inline text after the heading) when `text` starts with an item heading."""
    text = _unquote(text)
    m = _FIRST_WORD.match(text)
    if not m:
        return None
    for v in _VARIANTS.get(m[1].lower(), ()):
        hit = v.regex.match(text)
        if not hit:
            continue
        rest = text[hit.end():]
        sep = hit["sep"]
        # A short title at the start of a prose sentence is not a heading.
        if not rest.strip() or any(c in sep for c in ":?-–—|") or v.words >= LONG_VARIANT_WORDS:
            return v.key, rest
    return None


# ---------------------------------------------------------------- one line

_MARKUP = re.compile(r"(?P<hash>#{1,6}[ \t]*)?(?:[-*+•][ \t]+)?(?P<bold>\*\*|__)?[ \t]*")
_NUM_ITEM = re.compile(r"(?:item|question|q)[ \t]*\.?[ \t]*#?[ \t]*(\d{1,2})(?![\d])"
                       r"(?:[.):]|[ \t]+[-–—])?", re.IGNORECASE)
_NUM_PLAIN = re.compile(r"\(?(\d{1,2})(?:\)|\.(?!\d)|:(?!\d)|[ \t]+[-–—](?=\s)|"
                        r"(?=[ \t]*(?:\*\*|__)?[ \t]*$))")
_NUM_HASH = re.compile(r"(\d{1,2})(?=[ \t]+[A-Za-z])")  # "## 1 Certificates"
_MD_HEADING = re.compile(r"[ \t]{0,3}#{1,6}[ \t]")
_CLOSE_BOLD = re.compile(r"[ \t]*(?:\*\*|__)?[ \t]*")


@dataclass
class _Line:
    index: int
    indent: int
    style: str  # "hash", "bold", "item" or "plain": how the heading is marked
    number: int | None
    key: str | None  # the item its text names, of any ruleset
    inline: str  # text after the heading on the same line
    weight: int = 0
    nested: bool = False


def _analyse(index: int, raw: str) -> _Line | None:
    head = raw[:MAX_HEADING_LINE]
    stripped = head.lstrip()
    if not stripped:
        return None
    indent = len(head) - len(stripped)
    mk = _MARKUP.match(stripped)
    style = "hash" if mk["hash"] else "bold" if mk["bold"] else "plain"
    s = stripped[mk.end():]
    number = None
    num = _NUM_ITEM.match(s) or _NUM_PLAIN.match(s) or (style == "hash" and _NUM_HASH.match(s))
    if num:
        number = int(num[1])
        if s[:1].isalpha():
            style = "item"
        s = s[num.end():]
        s = s[_CLOSE_BOLD.match(s).end():]
    label = _match_label(s)
    if number is None and label is None:
        return None
    key, inline = label if label else (None, s)
    inline = inline + raw[len(head):]
    return _Line(index, indent, style, number, key, inline.strip(" \t*_"))


# ---------------------------------------------------------------- numbered chain


def _weigh(cands: list[_Line], lines: list[str], keys: tuple[str, ...]) -> None:
    """Give each numbered candidate its weight as a heading of the report.

    An item named by its text weighs most. An unnamed number weighs 10 unless
    it looks like a list inside an item: indented deeper than the headings,
    plain when the headings are marked up, or part of a run restarting at 1
    (a numbered timeline under item 7). Those weigh 1, so they fill a gap only
    when nothing better does and never push out a real heading.
    """
    marked = [c.style for c in cands if c.style != "plain"]
    dominant = max(set(marked), key=marked.count) if len(marked) >= NUMBERED_MIN_HEADINGS else None
    min_indent = min(c.indent for c in cands)
    prev: int | None = None
    in_run = False
    numbered_at = {c.index for c in cands}
    for c in cands:
        assert c.number is not None
        if c.key is None:
            restart = prev is not None and c.number == 1
            in_run = restart or (in_run and prev is not None and c.number == prev + 1)
            c.nested = in_run
        else:
            in_run = False
        prev = c.number
        if c.key is not None:
            c.weight = 100 if c.key in keys else 0
        elif c.nested or c.indent > min_indent or (dominant and c.style != dominant):
            c.weight = 1
        else:
            c.weight = 10
        if c.weight and _has_content(c, lines, numbered_at):
            c.weight += 1  # of two "3." lines, the table of contents entry is the empty one


def _has_content(c: _Line, lines: list[str], stops: set[int]) -> bool:
    if c.inline:
        return True
    for j in range(c.index + 1, min(len(lines), c.index + CONTENT_LOOKAHEAD_LINES)):
        if j in stops:
            return False
        if lines[j].strip():
            return True
    return False


def _position(c: _Line, keys: tuple[str, ...]) -> int | None:
    if c.key is not None:
        return keys.index(c.key) if c.key in keys else None
    assert c.number is not None
    return c.number - 1 if 1 <= c.number <= len(keys) else None


def _best_chain(cands: list[_Line], keys: tuple[str, ...]) -> list[tuple[_Line, int]]:
    """The heaviest run of candidates whose item positions strictly increase in text order."""
    # best_end[p]: (weight, node) of the heaviest chain ending at position p so far
    best_end: list[tuple[int, int] | None] = [None] * len(keys)
    nodes: list[tuple[_Line, int, int | None]] = []  # (line, position, previous node)
    totals: list[int] = []
    for c in cands:
        pos = _position(c, keys)
        if pos is None or c.weight <= 0:
            continue
        before = [b for b in best_end[:pos] if b is not None]
        prior = max(before, key=lambda b: (b[0], b[1])) if before else None
        total = c.weight + (prior[0] if prior else 0)
        nodes.append((c, pos, prior[1] if prior else None))
        totals.append(total)
        here = best_end[pos]
        if here is None or total >= here[0]:  # ties: the later heading, after any contents page
            best_end[pos] = (total, len(nodes) - 1)
    ends = [b for b in best_end if b is not None]
    if not ends:
        return []
    node: int | None = max(ends, key=lambda b: (b[0], b[1]))[1]
    chain: list[tuple[_Line, int]] = []
    while node is not None:
        line, pos, prev = nodes[node]
        chain.append((line, pos))
        node = prev
    return chain[::-1]


# ---------------------------------------------------------------- sections


def _section_text(start: _Line, end: int, lines: list[str]) -> str:
    body = [start.inline, *lines[start.index + 1 : end]] if start.inline else \
        lines[start.index + 1 : end]
    text = "\n".join(body).strip()
    if start.key:
        # "1." followed by the question on its own line: the question is not the answer.
        first, _, after = text.partition("\n")
        label = _match_label(first.strip(" \t*_#"))
        if label and label[0] == start.key and not label[1].strip(" \t*_:"):
            text = after.strip()
    return text


def _is_answer(text: str) -> bool:
    bare = re.sub(r"[\s*_#>|`]+", " ", text).strip().lower().rstrip(".")
    return bool(bare) and bare not in PLACEHOLDERS


def check_final_report(text: str, ruleset: Ruleset) -> ReportCheck:
    """Which of the ruleset's final-report items `text` answers, and the text of each."""
    keys = ruleset.report_item_keys()
    lines = text[:MAX_REPORT_CHARS].replace("\xa0", " ").splitlines()
    found = [r for i, ln in enumerate(lines) if (r := _analyse(i, ln)) is not None]
    titled = [r for r in found if r.key is not None]
    cands = [r for r in found if r.number is not None and 1 <= r.number <= len(FINAL_REPORT_ITEMS)]
    chain: list[tuple[_Line, int]] = []
    if cands:
        _weigh(cands, lines, keys)
        chain = _best_chain(cands, keys)
    # Numbers rule unless unnumbered headings name more distinct items than they find.
    unnumbered_titles = len({r.key for r in titled if r.number is None})
    numbered = len(chain) >= NUMBERED_MIN_HEADINGS and len(chain) >= unnumbered_titles

    heads: dict[int, str | None] = {}  # line index -> item key (None: only ends a section)
    if numbered:
        for line, pos in chain:
            heads[line.index] = keys[pos]
        covered = set(heads.values())
        for r in titled:
            if r.key not in keys or (r.number is not None and r.index not in heads):
                heads.setdefault(r.index, None)  # another item's heading ends the section
            elif r.key not in covered:
                heads.setdefault(r.index, r.key)  # e.g. an unnumbered "Appendix: Log files"
    else:
        for r in titled:
            heads[r.index] = r.key if r.key in keys else None
        for i, ln in enumerate(lines):
            if _MD_HEADING.match(ln):
                heads.setdefault(i, None)  # "## Appendix" ends the section above it

    by_index = {r.index: r for r in found}
    order = sorted(heads)
    collected: dict[str, list[str]] = {}
    for n, idx in enumerate(order):
        key = heads[idx]
        if key is None:
            continue
        end = order[n + 1] if n + 1 < len(order) else len(lines)
        line = by_index[idx]
        if line.key != key:
            line = _Line(line.index, line.indent, line.style, line.number, key, line.inline)
        collected.setdefault(key, []).append(_section_text(line, end, lines))

    sections: dict[str, str] = {}
    for key in keys:
        if key in collected:
            parts = [p for p in collected[key] if p] or [""]
            joined = "\n\n".join(parts)
            sections[key] = joined if len(joined) <= MAX_SECTION_CHARS else \
                joined[: MAX_SECTION_CHARS - 1] + "…"
    present = tuple(k for k in keys if _is_answer(sections.get(k, "")))
    missing = tuple(k for k in keys if k not in present)
    return ReportCheck(present=present, missing=missing, sections=sections, numbered=numbered)


# "Final report", "Final Security Incident Report", "final-report"; not "final word on the report".
_FINAL_SUBJECT = re.compile(
    r"\bfinal[\s_-]+(?:(?:security|incident|investigation)[\s_-]+){0,2}report", re.IGNORECASE
)


def looks_like_final_report(
    subject: str, attachment_names: Sequence[str], text: str, ruleset: Ruleset
) -> bool:
    """True when the mail is a final report: by subject, attachment name, or five items found."""
    if _FINAL_SUBJECT.search(subject[:MAX_HEADING_LINE]):
        return True
    if any("final" in name.lower() for name in attachment_names):
        return True
    return len(check_final_report(text, ruleset).present) >= FINAL_REPORT_MIN_ITEMS
