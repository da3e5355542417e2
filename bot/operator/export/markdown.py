"""The dossier as a Markdown report a person (management, an auditor) reads top to bottom.

Built from the same JSON as `show --json`, so the report says nothing the
record does not. Text that came from mail is escaped for table cells and
for HTML, because the report may be rendered by a Markdown viewer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, tzinfo
from typing import Any

from bot.decide.incident.timeliness import format_span
from bot.operator.textviews import VERDICTS, cause, local_time, when
from bot.rules.rulesets import FORM_FIELDS, FORM_FIELDS_BY_KEY, get_ruleset

# How many domain names the summary lists; the CSV export holds all of them.
DOMAINS_SHOWN = 50

_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_ENTITY = re.compile(r"&(?=#?\w+;)")
SECTIONS = ("Summary", "Notification form", "Timeline", "Requests and deadlines",
            "Notices and proposals", "Certificates and domains", "Final-report checklist",
            "Messages")


def cell(value: object) -> str:
    """One Markdown table cell: no pipes, no line breaks, no live HTML."""
    if value is None or value == "":
        return "–"
    # A backslash before what would start a tag, an autolink or an entity keeps
    # it text (CommonMark) and reads as the mail said it, unlike "&lt;" in a
    # dossier read as plain text; "a < b" needs nothing.
    text = _TAG_START.sub(r"\\<", str(value))
    text = _ENTITY.sub(r"\\&", text)
    text = text.replace("|", "\\|")
    return "<br>".join(line.strip() for line in text.splitlines()) or "–"


def code(value: str | None) -> str:
    """A Message-ID or hash as a code span (backticks inside cannot be escaped, so dropped)."""
    return f"`{value.replace('`', '')}`" if value else "–"


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> Iterator[str]:
    header = list(header)
    yield "| " + " | ".join(header) + " |"
    yield "|" + "|".join("---" for _ in header) + "|"
    empty = True
    for row in rows:
        empty = False
        yield "| " + " | ".join(row) + " |"
    if empty:
        yield "| " + " | ".join(["–"] * len(header)) + " |"


def _summary(d: dict[str, Any], tz: tzinfo) -> Iterator[str]:
    c = d["certificates"]
    late = d.get("late_by_seconds")
    verdict = VERDICTS[d["notified_on_time"]] + (
        f" (late by {format_span(timedelta(seconds=late))})" if late else "")
    rows = [
        ("Incident", d["id"]), ("CA", d["ca"]), ("Category", d["category"]),
        ("Status", d["status"]), ("Ruleset", d["ruleset"]),
        ("Incident occurred", when(d["incident_at"], tz)),
        ("Discovered", when(d["discovered_at"], tz)),
        ("Notified (received)", when(d["notified_at"], tz)),
        ("24-hour deadline", when(d["notification_deadline"], tz)),
        ("24-hour verdict", verdict),
        ("Opened", when(d["opened_at"], tz)), ("Closed", when(d["closed_at"], tz)),
        ("Missing form fields", ", ".join(d["missing_fields"]) or "none"),
        ("Certificates", f"{c['count']} certificate(s), {c['unique_domains']} unique "
                         f"domain(s), {c['rejected']} line(s) rejected"),
        ("Messages", f"{sum(m['direction'] == 'in' for m in d['messages'])} in, "
                     f"{sum(m['direction'] == 'out' for m in d['messages'])} out"),
    ]
    yield from table(("", ""), ((f"**{k}**", cell(v)) for k, v in rows))


def _form(d: dict[str, Any], tz: tzinfo) -> Iterator[str]:
    def label(key: str) -> str:
        return FORM_FIELDS_BY_KEY[key].label if key in FORM_FIELDS_BY_KEY else key

    order = {f.key: i for i, f in enumerate(FORM_FIELDS)}
    current = sorted((v for v in d["form_history"] if v["current"]),
                     key=lambda v: order.get(v["key"], len(order)))
    yield from table(("Field", "Answer", "Recorded", "From message"),
                     ((cell(label(v["key"])), cell(v["value"]),
                       cell(when(v["recorded_at"], tz, local=False)), code(v["message_id"]))
                      for v in current))
    earlier = [v for v in d["form_history"] if not v["current"]]
    yield ""
    yield "### Earlier answers"
    yield ""
    if not earlier:
        yield "No answer has been changed."
        return
    yield from table(("Field", "Earlier answer", "Recorded", "From message"),
                     ((cell(label(v["key"])), cell(v["value"]),
                       cell(when(v["recorded_at"], tz, local=False)), code(v["message_id"]))
                      for v in earlier))


def _timeline(d: dict[str, Any], tz: tzinfo) -> Iterator[str]:
    zone = getattr(tz, "key", str(tz))
    yield from table(("Time (UTC)", f"Time ({zone})", "Event", "Rule", "Cause", "S/MIME",
                      "Summary"),
                     ((cell(when(e["at"], local=False)), cell(local_time(e["at"], tz)),
                       cell(e["kind"]), cell(e["rule"]), cell(cause(e)), cell(e["smime"]),
                       cell(e["summary"])) for e in d["events"]))


def _met(dl: dict[str, Any]) -> str:
    if dl["state"] == "satisfied":
        by = f" by {dl['satisfied_by']}" if dl["satisfied_by"] else ""
        return f"met {when(dl['satisfied_at'], local=False)}{by}"
    if dl["state"] == "cancelled":
        return "cancelled"
    return "OVERDUE" if dl["overdue"] else "open"


def _deadlines(d: dict[str, Any], tz: tzinfo) -> Iterator[str]:
    yield from table(("Request", "Rule", "Requested", "By", "Due", "State", "How it was met",
                      "Reminders"),
                     ((cell(dl["kind"] + (f": {dl['text']}" if dl.get("text") else "")),
                       cell(dl["rule"]), cell(when(dl["created_at"], tz, local=False)),
                       cell(dl["requested_by"]), cell(when(dl["due_at"], tz)),
                       cell(dl["state"]), cell(_met(dl)), cell(dl["reminders_sent"]))
                      for dl in d["deadlines"]))


def _notices(d: dict[str, Any], tz: tzinfo) -> Iterator[str]:
    yield from table(("Action", "Target", "Effective", "Exceptional", "Sent", "Message"),
                     ((cell(n["action"]), cell(n["target"]), cell(when(n["effective_at"], tz)),
                       "yes" if n["exceptional"] else "no",
                       cell(when(n["sent_at"], tz, local=False)), code(n["message_id"]))
                      for n in d["notices"]))
    yield ""
    yield "### Proposals from the CA"
    yield ""
    yield from table(("Received", "State", "Summary", "Message"),
                     ((cell(when(p["received_at"], tz, local=False)), cell(p["state"]),
                       cell(p["summary"]), code(p["message_id"])) for p in d["proposals"]))


def _certificates(d: dict[str, Any], domains: list[str]) -> Iterator[str]:
    c = d["certificates"]
    yield f"- Certificates: **{c['count']}**"
    yield f"- Unique domains: **{c['unique_domains']}**"
    yield f"- Lines rejected in the lists received: **{c['rejected']}**"
    lists = [e for e in d["events"] if e["kind"] == "certificate-list"]
    yield f"- Certificate lists received: **{len(lists)}**"
    if domains:
        more = c["unique_domains"] - len(domains)
        yield ""
        yield "Domains" + (f" (first {len(domains)}; `rootnotify export {d['id']} --format "
                           f"csv` lists all)" if more > 0 else "") + ":"
        yield ""
        yield from (f"- {cell(name)}" for name in domains)


def _checklist(d: dict[str, Any]) -> Iterator[str]:
    report = d["final_report"]
    items = {i.key: i for i in get_ruleset(d["ruleset"]).final_report_items}
    yield ("A final report was received." if report["received"]
           else "No final report has been received.")
    yield ""
    for key in items:
        mark = "x" if key in report["present"] else " "
        yield f"- [{mark}] {items[key].number}. {cell(items[key].title)} (`{key}`)"


def _messages(d: dict[str, Any], tz: tzinfo) -> Iterator[str]:
    yield from table(("#", "Dir", "Time (UTC)", "Kind", "From / to", "Subject", "Message-ID",
                      "S/MIME", "Status", "SHA-256"),
                     ((cell(m["id"]), m["direction"], cell(when(m["at"], local=False)),
                       cell(m["kind"]),
                       cell(m.get("from") if m["direction"] == "in"
                            else ", ".join(m.get("to") or [])),
                       cell(m.get("subject")), code(m["message_id"]), cell(m["smime"]),
                       cell(m["status"]), code(m["sha256"]))
                      for m in d["messages"]))


def render_markdown(d: dict[str, Any], tz: tzinfo, generated_at: datetime,
                    domains: list[str]) -> Iterator[str]:
    """The report, line by line; `domains` is the first few for the summary."""
    yield f"# Incident dossier {d['id']}: {cell(d['ca'])}"
    yield ""
    yield (f"Generated by rootnotify at {when(generated_at.isoformat(), tz)} from the "
           f"incident's record. Times are UTC, with {getattr(tz, 'key', tz)} beside them.")
    parts = {
        "Summary": _summary(d, tz), "Notification form": _form(d, tz),
        "Timeline": _timeline(d, tz), "Requests and deadlines": _deadlines(d, tz),
        "Notices and proposals": _notices(d, tz),
        "Certificates and domains": _certificates(d, domains),
        "Final-report checklist": _checklist(d), "Messages": _messages(d, tz),
    }
    for title in SECTIONS:
        yield ""
        yield f"## {title}"
        yield ""
        yield from parts[title]
