"""The commands about stored messages: reprocess, drop, message, and the quarantine."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bot.clibase import app, console, context, error, print_json, table_console
from bot.clock import iso
from bot.errors import OperatorError

MESSAGE_NUMBER = typer.Argument(metavar="N", help="the message's number (status, show and "
                                "quarantine print it)", show_default=False)


@app.command()
def reprocess(incoming_id: Annotated[int | None, MESSAGE_NUMBER] = None,
              failed: Annotated[bool, typer.Option("--failed", help="every failed and parked "
                                                   "message")] = False) -> None:
    """Process a stored message again (by its number), or every failed and parked one.

    Exit 1 when the number is unknown, the message was processed already, or it fails again.

    Examples: rootnotify reprocess 13;  rootnotify reprocess --failed
    """
    from bot.operator.messageops import requeue_one
    from bot.service.pipeline import process_pending, requeue
    from storage import queries

    if (incoming_id is None) == (not failed):
        error("give a message number or --failed (not both)")
        raise typer.Exit(2)
    ctx = context()
    if incoming_id is not None:
        requeue_one(ctx, incoming_id)
        count, ids = 1, [incoming_id]
    else:
        with ctx.db.read() as session:
            ids = [m.id for m in queries.problem_messages(session) if m.id is not None]
        count = requeue(ctx, failed_only=True)
    report = process_pending(ctx)
    with ctx.db.read() as session:
        still = {i: m for i, m in queries.inbound_by_ids(session, ids).items()
                 if m.state in ("failed", "parked")}
    console.print(f"{count} message(s) requeued; {report.processed} processed, "
                  f"{report.failed} failed, {report.parked} parked", markup=False)
    for inbound_id, m in sorted(still.items()):
        error(f"message {inbound_id} failed again: {m.last_error} (rootnotify message "
              f"{inbound_id}; end it with rootnotify drop {inbound_id} --reason …)")
    if still:
        raise typer.Exit(1)


@app.command()
def drop(incoming_id: Annotated[int, MESSAGE_NUMBER],
         reason: Annotated[str, typer.Option("--reason", help="why (kept on record)",
                                             show_default=False)],
         by: Annotated[str | None, typer.Option("--by", help="who drops it (default: your "
                                                "login name)")] = None) -> None:
    """End a failed, parked or quarantined message: kept with its raw bytes, never retried.

    Who dropped it, when and why go into its note and the timeline.

    Example: rootnotify drop 13 --reason "empty file ingested by mistake"
    """
    from bot.operator.messageops import drop as run_drop

    ctx = context()
    inbound = run_drop(ctx, incoming_id, reason, by)
    console.print(f"message {incoming_id} dropped: {inbound.note}", markup=False,
                  highlight=False)


@app.command()
def message(incoming_id: Annotated[int, MESSAGE_NUMBER],
            raw: Annotated[bool, typer.Option("--raw", help="the bytes as received, "
                                              "nothing else")] = False,
            as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
            = False) -> None:
    """Read one stored mail: headers, parts, what was understood, S/MIME, the decision.

    Example: rootnotify message 13;  rootnotify message 13 --raw > m13.eml
    """
    from bot.operator.messageview import message_json, print_message, raw_message

    ctx = context()
    with ctx.db.read() as session:
        if raw:
            data = raw_message(session, incoming_id)
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            return
        view = message_json(session, incoming_id)
    if as_json:
        print_json(view)
        return
    print_message(view, sys.stdout)


quarantine_app = typer.Typer(help="Mail from unknown senders, kept and never answered: list, "
                             "release, drop.", no_args_is_help=False)
app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.callback(invoke_without_command=True)
def quarantine(ctx_: typer.Context,
               as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
               = False) -> None:
    """Mail from unknown senders, kept and never answered (a table; or release N, drop N)."""
    if ctx_.invoked_subcommand is not None:
        return
    from rich.table import Table

    from storage import queries

    ctx = context()
    tz = ctx.config.bot.timezone
    with ctx.db.read() as session:
        rows = [{"id": m.id, "message_id": m.message_id, "from": m.from_address,
                 "subject": m.subject, "received_at": iso(m.received_at), "reason": m.note}
                for m in queries.quarantined(session)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("quarantine is empty", markup=False)
        return
    table = Table(title=f"Quarantine ({len(rows)}): kept, never answered; times in "
                  f"{getattr(tz, 'key', tz)}", title_justify="left")
    for column in ("N", "received", "from", "subject", "reason"):
        table.add_column(column, overflow="fold")
    from datetime import datetime

    for r in rows:
        received = datetime.fromisoformat(r["received_at"]).astimezone(tz)
        table.add_row(str(r["id"]), received.strftime("%Y-%m-%d %H:%M"), r["from"] or "-",
                      r["subject"] or "(no subject)", r["reason"] or "-")
    table.caption = ("rootnotify quarantine release N [--incident ID] · "
                     "rootnotify quarantine drop N --reason …")
    table_console().print(table)


@quarantine_app.command("release")
def quarantine_release(
    incoming_id: Annotated[int, MESSAGE_NUMBER],
    incident: Annotated[str | None, typer.Option("--incident", metavar="ID",
                                                 help="record it in this incident as it is")]
    = None,
) -> None:
    """Take a mail out of quarantine: into an incident's record (--incident), or processed
    again as it would be now (after you made its sender a contact)."""
    from bot.operator.messageops import release
    from bot.service.pipeline import process_pending
    from storage import queries

    ctx = context()
    release(ctx, incoming_id, incident)
    if incident is not None:
        console.print(f"message {incoming_id} released into {incident}", markup=False)
        return
    process_pending(ctx)
    with ctx.db.read() as session:
        m = queries.inbound_by_ids(session, [incoming_id])[incoming_id]
    if m.quarantined:
        raise OperatorError(f"message {incoming_id} was processed again and is quarantined "
                            f"again: {m.note} (add its sender to [[ca]] contacts, or give "
                            "--incident ID)")
    console.print(f"message {incoming_id} released and processed: {m.kind}"
                  + (f" in {m.incident_id}" if m.incident_id else ""), markup=False)


@quarantine_app.command("drop")
def quarantine_drop(
    incoming_id: Annotated[int, MESSAGE_NUMBER],
    reason: Annotated[str, typer.Option("--reason", help="why (kept on record)")]
    = "spam or stray mail",
    by: Annotated[str | None, typer.Option("--by", help="who drops it (default: your login "
                                           "name)")] = None,
) -> None:
    """Drop a quarantined mail: kept on record, out of the quarantine list."""
    from bot.operator.messageops import drop as run_drop

    ctx = context()
    with ctx.db.read() as session:
        from storage import queries

        m = queries.inbound_by_ids(session, [incoming_id]).get(incoming_id)
        if m is not None and not m.quarantined:
            raise OperatorError(f"message {incoming_id} is not in quarantine")
    inbound = run_drop(ctx, incoming_id, reason, by)
    console.print(f"message {incoming_id} dropped: {inbound.note}", markup=False,
                  highlight=False)
