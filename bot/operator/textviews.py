"""The operator's terminal views: incidents table, one incident, health — rich text from JSON.

Each view takes the same dictionaries `--json` prints, so what a person reads
and what a script reads cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.rules.rulesets import FORM_FIELDS, get_ruleset

FORM_LABELS = {f.key: f.label for f in FORM_FIELDS}
VERDICTS = {True: "met", False: "late", None: "unjudged"}


def is_utc(tz: tzinfo) -> bool:
    """The configured zone is UTC itself: a time need not be shown twice."""
    return getattr(tz, "key", "UTC") in ("UTC", "Etc/UTC", "Etc/UCT", "UCT", "Zulu")


def when(value: str | None, tz: tzinfo | None = None, *, local: bool = True) -> str:
    """`2026-11-26 13:00 UTC`, with the configured zone beside it when that is not UTC."""
    if not value:
        return "-"
    at = datetime.fromisoformat(value)
    text = at.strftime("%Y-%m-%d %H:%M UTC")
    if local and tz is not None and not is_utc(tz):
        text += f" ({at.astimezone(tz).strftime('%Y-%m-%d %H:%M %Z')})"
    return text


def short(value: str | None, tz: tzinfo) -> str:
    """A compact time in the configured zone, for narrow table columns."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(tz).strftime("%Y-%m-%d %H:%M")


def local_time(value: str | None, tz: tzinfo) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def cause(event: dict[str, Any]) -> str:
    """What caused an event: the mail that came in, the command, or our own mail."""
    if event.get("command"):
        head = f"command {event['command']}"
        return head + (f" in mail #{event['inbound_id']}" if event.get("inbound_id") else "")
    if event.get("inbound_id") is not None:
        return f"mail #{event['inbound_id']} {event.get('message_id') or '(no Message-ID)'}"
    if event.get("outbound_id") is not None:
        return f"our mail {event.get('message_id') or '#' + str(event['outbound_id'])}"
    return "scheduler / operator"


def incidents_table(rows: list[dict[str, Any]], tz: tzinfo) -> Table:
    zone = getattr(tz, "key", str(tz))
    table = Table(title=f"Incidents ({len(rows)}); times in {zone}", title_justify="left")
    for column in ("id", "CA", "category", "status", "opened", "24 h", "next deadline",
                   "overdue"):
        table.add_column(column, no_wrap=column in ("id", "status", "24 h", "overdue"),
                         overflow="fold")
    for r in rows:
        nxt = (f"{r['next_due_kind']} {short(r['next_due_at'], tz)}"
               if r["next_due_at"] else "-")
        overdue = f"[bold red]{r['overdue']}[/]" if r["overdue"] else "0"
        verdict = VERDICTS[r["notified_on_time"]]
        table.add_row(escape(r["id"]), escape(r["ca"]), escape(r["category"]),
                      escape(r["status"]), short(r["notified_at"], tz),
                      f"[red]{verdict}[/]" if verdict == "late" else verdict,
                      escape(nxt), overdue)
    return table


def _section(console: Console, title: str) -> None:
    console.print()
    console.print(f"[bold underline]{escape(title)}[/]")


def print_incident(console: Console, data: dict[str, Any], tz: tzinfo) -> None:  # noqa: C901, PLR0915 -- i18b retypes it; split there
    out = console.print
    out(f"[bold]{escape(data['id'])}[/]  {escape(data['ca'])} — {escape(data['category'])}"
        f" ({escape(data['status'])}, ruleset {escape(data['ruleset'])})")
    verdict = VERDICTS[data["notified_on_time"]]
    out(f"notified {when(data['notified_at'], tz)}; 24-hour deadline "
        f"{when(data['notification_deadline'], tz)}: {verdict}", markup=False)
    out(f"incident {when(data['incident_at'], tz)}; discovered "
        f"{when(data['discovered_at'], tz)}", markup=False)
    if data.get("resolved_at"):
        out(f"resolved {when(data['resolved_at'], tz)}", markup=False)

    _section(console, "Form")
    history: dict[str, list[dict[str, Any]]] = {}
    for v in data["form_history"]:
        history.setdefault(v["key"], []).append(v)
    order = {f.key: i for i, f in enumerate(FORM_FIELDS)}
    for key, rows in sorted(history.items(), key=lambda kv: order.get(kv[0], len(order))):
        current = [r for r in rows if r["current"]]
        shown = current[-1] if current else rows[-1]
        label = FORM_LABELS.get(key, key)  # the form's own words, as the CA saw them
        out(f"  {label}: {shown['value']}", markup=False, highlight=False)
        for old in rows:
            if old is not shown:
                out(f"      earlier ({when(old['recorded_at'], tz, local=False)}, mail "
                    f"#{old['inbound_id']}): {old['value']}", markup=False, highlight=False)
    if data["missing_fields"]:
        out(f"  [yellow]missing:[/] {escape(', '.join(data['missing_fields']))}")

    _section(console, "Deadlines")
    if not data["deadlines"]:
        out("  none")
    for d in data["deadlines"]:
        met = (f"met {when(d['satisfied_at'], tz, local=False)} by {d['satisfied_by'] or '-'}"
               if d["state"] == "satisfied" else d["state"])
        flag = " OVERDUE" if d["overdue"] else ""
        out(f"  {d['kind']:<22} due {when(d['due_at'], tz)} [{d['rule']}] {met}{flag}"
            + (f" — {d['text']}" if d.get("text") else ""), markup=False, highlight=False)

    _section(console, "Notices and proposals")
    if not data["notices"] and not data["proposals"]:
        out("  none")
    for n in data["notices"]:
        out(f"  notice: {n['action']} {n['target']}, effective {when(n['effective_at'], tz)}"
            f"{' (exceptional)' if n['exceptional'] else ''}; sent "
            f"{when(n['sent_at'], tz, local=False)} as {n['message_id']}",
            markup=False, highlight=False)
    for p in data["proposals"]:
        out(f"  proposal {when(p['received_at'], tz, local=False)} ({p['state']}): "
            f"{p['summary']}", markup=False, highlight=False)

    certs = data["certificates"]
    _section(console, "Certificates")
    out(f"  {certs['count']} certificate(s), {certs['unique_domains']} unique domain(s), "
        f"{certs['rejected']} line(s) rejected", markup=False)

    report = data["final_report"]
    _section(console, "Final-report checklist")
    out("  received" if report["received"] else "  not received yet", markup=False)
    present = set(report["present"])
    for item in get_ruleset(data["ruleset"]).final_report_items:
        if item.key in present or item.key in report["missing"]:
            mark = "[green]✓ present[/]" if item.key in present else "[red]✗ missing[/]"
            out(f"  {mark}  {item.number:>2}. {escape(item.title)}")

    # One event a block rather than a table: a summary can be long, and a
    # terminal (or a mail someone pastes it into) is often 80 columns wide.
    local = not is_utc(tz)
    _section(console, "Timeline (UTC" + (f", and {getattr(tz, 'key', tz)})" if local else ")"))
    for e in data["events"]:
        smime = f", S/MIME {e['smime']}" if e["smime"] else ""
        beside = f"  {local_time(e['at'], tz)}" if local else ""
        out(f"  {when(e['at'], local=False)}{beside}  {e['kind']}"
            f" [{e['rule'] or '-'}]", markup=False, highlight=False)
        out(f"      cause: {cause(e)}{smime}", markup=False, highlight=False)
        out(f"      {e['summary']}", markup=False, highlight=False)

    _section(console, "Messages")
    for m in data["messages"]:
        arrow = "→ in " if m["direction"] == "in" else "← out"
        who = m.get("from") if m["direction"] == "in" else ", ".join(m.get("to") or [])
        out(f"  {arrow} #{m['id']} {when(m['at'], tz, local=False)} {m['kind']:<16} "
            f"{m['status']:<9} S/MIME {m['smime'] or '-':<9} {who}  {m['message_id']}",
            markup=False, highlight=False)
        if m.get("failed_to"):
            out(f"      not delivered to {', '.join(m['failed_to'])}: {m['last_error']}",
                markup=False, highlight=False)
        if m.get("retrying_to"):
            out(f"      to be retried for {', '.join(m['retrying_to'])}", markup=False,
                highlight=False)


def print_health(console: Console, data: dict[str, Any], tz: tzinfo) -> None:
    out = console.print
    needs = data["needs_attention"]
    if needs:
        out("[bold red]NEEDS ATTENTION[/]")
        for line in needs:
            out(f"  - {escape(line)}")
    else:
        out("[bold green]OK[/]: nothing needs a person")
    out()
    last = data["last_received"]
    out("last mail received: " + (", ".join(f"{ch} {when(at, tz)}" for ch, at in last.items())
                                  or "none yet"), markup=False)
    out("last successful IMAP poll: " + (when(data["last_imap_success_at"], tz)
                                         if data["imap_enabled"] else "IMAP disabled"),
        markup=False)
    for folder, row in data["imap"].items():
        if row["last_error"]:
            out(f"  {folder}: last error {row['last_error']}", markup=False)
    outbox = data["outbox"]
    out(f"outbox: {outbox['queued']} queued (oldest {when(outbox['oldest_queued_at'], tz)}), "
        f"{outbox.get('sent', 0)} sent, {outbox.get('failed', 0)} failed", markup=False)
    out(f"inbound: backlog {data['backlog']} (oldest {when(data['oldest_unprocessed_at'], tz)}),"
        f" {data['failed']} failed and retrying, {data['parked']} parked, "
        f"{data['quarantined']} quarantined, {data.get('dropped', 0)} dropped", markup=False)
    for m in data["problem_messages"]:
        out(f"  message #{m['id']} {m['state']} after {m['attempts']} attempt(s): "
            f"{m['last_error']}", markup=False, highlight=False)
    out(f"deadlines: {data['open_deadlines']} open, {data['overdue_deadlines']} overdue",
        markup=False)
    for d in data["overdue"]:
        out(f"  {d['incident']} {d['kind']} due {when(d['due_at'], tz)}", markup=False)
    out(f"scheduler last run: {when(data['scheduler_last_run'], tz)}", markup=False)
