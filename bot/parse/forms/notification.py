"""Find the notification form (R1a) in a CA's mail and read it into typed fields.

`parse_form_text` reads one text; `find_form` decides which text of a message
holds the form (a form-named attachment, the body, another attachment, a
forwarded mail) and says in `source` which one it read. Labels are matched
through the table in `bot.rules.formfields`; dates through `bot.parse.forms.dates`.

Decisions a reader of an acknowledgement should know:
- a field is present when its answer is not empty; "unknown", "N/A", "none"
  are answers and are kept as written (for `perpetrator` "unknown" is the
  expected answer); an answer that is only punctuation or the blank form's
  placeholder ("-", "___", "[ ]", the hint in parentheses) is absent;
- an unreadable date keeps its text as the answer, `at` is None, and the
  reason is in `note` and in `problems`;
- a label given twice: the first non-empty answer is read, the repeat is
  listed in `problems`;
- the two 2026-02 fields are read whatever the ruleset (a CA's answer is never
  dropped); `missing()` asks the ruleset which keys are required.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo

from bot.parse.forms.dates import parse_when
from bot.parse.forms.documents import PdfField, extract_attachment_text, html_to_text
from bot.parse.forms.formlines import (
    _CAMEL,
    _clean_value,
    _Open,
    _read_lines,
    _segments,
    _strip_forward_headers,
)
from bot.parse.mail.message import Attachment, ParsedMessage, parse_message
from bot.rules.formfields import CATEGORY_PATTERNS, LABELS, normalize_label
from bot.rules.rulesets import (
    CATEGORIES,
    FORM_FIELDS_BY_KEY,
    RULESET_2026_02,
    Ruleset,
)

# A form is a page or two; a body larger than this is something else, and the
# line-by-line scan must stay bounded on hostile input.
MAX_FORM_TEXT = 512_000
# Fewer labels than this is a sentence that happens to contain one, not a form.
MIN_LABELS = 2
# In a reply in an incident's thread one label is enough: the natural answer to
# "you are missing X" is the one line "X: …" (R1a).
MIN_REPLY_LABELS = 1
# A forwarded mail inside a forwarded mail inside…: real forwards nest once or twice.
MAX_FORWARD_DEPTH = 3
DATE_KEYS = ("incident_at", "discovered_at")
FORM_NAME_WORDS = ("form", "notification", "incident")


@dataclass(frozen=True)
class FieldValue:
    key: str
    value: str
    at: datetime | None = None  # for incident_at/discovered_at: the parsed UTC time
    note: str | None = None  # e.g. "no time zone given; read as UTC"


@dataclass(frozen=True)
class ParsedForm:
    fields: dict[str, FieldValue]  # only fields found with a non-empty value
    category: str  # one of CATEGORIES; "other" when absent or unknown
    category_note: str | None
    source: str  # "the message body", "the attachment 'form.docx'", …
    problems: tuple[str, ...]  # what could not be read
    labels_found: int = 0  # form labels seen, answered or not

    def missing(self, ruleset: Ruleset) -> list[str]:
        """The ruleset's required keys with no answer, in the form's order."""
        return [key for key in ruleset.required_fields if key not in self.fields]


def _category(raw: str | None) -> tuple[str, str | None]:
    if raw is None:
        return "other", "no incident type given; recorded as other"
    low = raw.lower()
    if low.strip() in CATEGORIES:
        return low.strip(), None
    hits = []
    for category, pattern in CATEGORY_PATTERNS:
        m = re.search(pattern, low)
        if m:
            hits.append((m.start(), category))
    if not hits:
        return "other", f"incident type {raw!r} not recognised; recorded as other"
    hits.sort()
    chosen = hits[0][1]
    if len({c for _, c in hits}) > 1:
        return chosen, f"several incident types in {raw!r}; recorded as {chosen}"
    return chosen, None


def parse_form_text(
    text: str, ruleset: Ruleset, tz: tzinfo, source: str = "the message body",
    min_labels: int = MIN_LABELS,
) -> ParsedForm:
    """Read the form in `text`; never raises. `ruleset` is kept for the caller's `missing()`."""
    del ruleset  # every known label is read; the ruleset only decides what is required
    problems: list[str] = []
    if len(text) > MAX_FORM_TEXT:
        problems.append(f"{source} is longer than {MAX_FORM_TEXT:,} characters; "
                        "only the beginning was read")
        text = text[:MAX_FORM_TEXT]
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    chosen: list[_Open] = []
    chosen_source = source
    for kind, lines in _segments(text):
        if kind == "quoted":
            continue
        if kind in ("forward", "original"):
            lines = _strip_forward_headers(lines)
        found = _read_lines(lines)
        if kind == "top":
            chosen = found
            if len(found) >= min_labels:
                break
            continue
        answered = sum(1 for f in found if _clean_value(f.lines))
        if len(chosen) < min_labels and answered >= min_labels:
            chosen = found
            chosen_source = ("the forwarded message" if source == "the message body"
                             else f"the forwarded message in {source}")
            break
    return _build(chosen, tz, chosen_source, problems)


def _build(found: list[_Open], tz: tzinfo, source: str, problems: list[str]) -> ParsedForm:
    fields: dict[str, FieldValue] = {}
    for item in found:
        value = _clean_value(item.lines)
        if not value:
            continue
        for key in item.keys:
            if key in fields:
                problems.append(f"'{item.label}' was answered twice; the first answer was read")
                continue
            note = None
            if len(item.keys) > 1:
                note = f"answered together under '{item.label}'"
            at = None
            if key in DATE_KEYS:
                when = parse_when(value, tz)
                at = when.at
                note = when.note(tz)
                if when.unreadable:
                    problems.append(f"could not read the date given for '{item.label}': "
                                    f"{value!r} ({when.reason})")
            fields[key] = FieldValue(key, value, at, note)
    raw_category = fields["category"].value if "category" in fields else None
    category, category_note = _category(raw_category)
    return ParsedForm(fields, category, category_note, source, tuple(problems), len(found))


def _is_mail(att: Attachment) -> bool:
    return att.content_type.lower() == "message/rfc822" or att.extension == "eml"


def _is_form_named(att: Attachment) -> bool:
    name = att.filename.lower()
    return any(word in name for word in FORM_NAME_WORDS)


def _body_text(message: ParsedMessage) -> str:
    if message.text_plain.strip():
        return message.text_plain
    if message.text_html.strip():
        return html_to_text(message.text_html).text
    return ""


def _attachment_form(
    att: Attachment, ruleset: Ruleset, tz: tzinfo, depth: int, min_labels: int
) -> tuple[ParsedForm | None, list[str]]:
    """The form read from one attachment, and what could not be read of it."""
    source = f"the attachment '{att.filename}'"
    if _is_mail(att):
        if depth >= MAX_FORWARD_DEPTH:
            return None, [f"{source}: forwarded mails nested too deeply; not read"]
        inner = parse_message(att.data)
        form = _find(inner, ruleset, tz, depth + 1, min_labels)
        if form is None:
            return None, []
        where = "the forwarded message" + (f" '{inner.subject}'" if inner.subject else "")
        if form.source != "the message body":
            where = f"{form.source} of {where}"
        return _with(form, source=where), []
    doc = extract_attachment_text(att)
    errors = [f"{source}: {doc.error}"] if doc.error else []
    if doc.fields:
        form = _from_pdf_fields(doc.fields, tz, source)
        if form.labels_found >= min_labels:
            return form, errors
    if not doc.text:
        return None, errors
    form = parse_form_text(doc.text, ruleset, tz, source, min_labels)
    return (form if form.labels_found >= min_labels else None), errors


def _from_pdf_fields(pdf_fields: tuple[PdfField, ...], tz: tzinfo, source: str) -> ParsedForm:
    """A form from filled PDF fields: a field's tooltip, name or key says which answer it is."""
    found = []
    for item in pdf_fields:
        short = item.name.rsplit(".", 1)[-1]
        spaced = _CAMEL.sub(" ", short)  # "DetectedBy" is "Detected By"
        for candidate in (item.tooltip, item.name, short, spaced):
            keys = (candidate,) if candidate in FORM_FIELDS_BY_KEY else (
                LABELS.get(normalize_label(candidate)) if candidate else None)
            if keys:
                found.append(_Open(keys, item.tooltip or short, item.value.splitlines()))
                break
    return _build(found, tz, source, [])


def _with(form: ParsedForm, **changes: object) -> ParsedForm:
    from dataclasses import replace

    return replace(form, **changes)  # type: ignore[arg-type]


def _find(message: ParsedMessage, ruleset: Ruleset, tz: tzinfo, depth: int,
          min_labels: int) -> ParsedForm | None:
    problems: list[str] = []
    # mail-parser folds a forwarded mail's text into the body; reading the
    # forwarded part itself first keeps `source` honest.
    named = [a for a in message.attachments if _is_form_named(a) or _is_mail(a)]
    others = [a for a in message.attachments if a not in named]
    for att in named:
        form, errors = _attachment_form(att, ruleset, tz, depth, min_labels)
        problems.extend(errors)
        if form is not None:
            return _with(form, problems=(*form.problems, *problems))
    body = parse_form_text(_body_text(message), ruleset, tz, min_labels=min_labels)
    if body.labels_found < min_labels and message.text_plain.strip() and message.text_html.strip():
        html_form = parse_form_text(html_to_text(message.text_html).text, ruleset, tz,
                                    min_labels=min_labels)
        if html_form.labels_found > body.labels_found:
            body = html_form
    if body.labels_found >= min_labels:
        return _with(body, problems=(*body.problems, *problems))
    for att in others:
        form, errors = _attachment_form(att, ruleset, tz, depth, min_labels)
        problems.extend(errors)
        if form is not None:
            return _with(form, problems=(*form.problems, *problems))
    if named and problems:
        # A form was attached but could not be read: say so rather than
        # answer as if no form had been sent.
        return ParsedForm({}, "other", "no incident type given; recorded as other",
                          f"the attachment '{named[0].filename}'", tuple(problems), 0)
    return None


def find_form(message: ParsedMessage, ruleset: Ruleset, tz: tzinfo,
              min_labels: int = MIN_LABELS) -> ParsedForm | None:
    """The form in `message`, or None when no text of it carries `min_labels` form labels.

    Order: an attachment named like a form ("form", "notification", "incident"
    in its name), then the body (plain text, else HTML), then other attachments
    and forwarded mails. A form-named attachment that cannot be read at all
    gives an empty form whose `problems` say why, so the CA is told.
    """
    try:
        return _find(message, ruleset, tz, 0, min_labels)
    except RecursionError:
        return None


def looks_like_form_request(message: ParsedMessage) -> bool:
    """True when the message carries no form: the sender should get the blank form.

    The subject is not needed to decide: a mail with a form in it is a
    notification whatever its subject says, and one without is answered with
    the blank form whatever it says.
    """
    from datetime import UTC

    return find_form(message, RULESET_2026_02, UTC) is None
