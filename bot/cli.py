"""The `rootnotify` command line: serve, ingest, tick, and the operator's views."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bot.clock import Clock, FixedClock, SystemClock, iso, parse_iso
from bot.config import Config, config_path, load_config
from bot.context import Context, make_context
from bot.errors import ConfigError
from bot.logs import setup_logging
from storage.db import SchemaTooNew, open_database
from storage.migrate import head as schema_head

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="rootnotify: the bot behind a root program's security-incident mailbox.")
console = Console()
# Width of tables written to a pipe or file, where no terminal says how wide to be.
PIPED_TABLE_WIDTH = 160
err = Console(stderr=True)


class State:
    config_option: str | None = None
    log_json: bool = False
    log_level: int = logging.INFO


state = State()


@app.callback()
def main_options(
    config: Annotated[str | None, typer.Option("--config", help="Path of the TOML configuration "
                                               "(else $ROOTNOTIFY_CONFIG, else ./config.toml)")]
    = None,
    log_json: Annotated[bool, typer.Option("--log-json", help="Log JSON lines")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail")] = False,
) -> None:
    state.config_option = config
    state.log_json = log_json
    state.log_level = logging.DEBUG if verbose else logging.INFO
    setup_logging(json_lines=log_json, level=state.log_level)


def _config() -> Config:
    try:
        return load_config(config_path(state.config_option))
    except ConfigError as exc:
        _error(f"{exc}")
        raise typer.Exit(2) from None


def _context(clock: Clock | None = None) -> Context:
    config = _config()
    try:
        db = open_database(config.storage_url)
    except SchemaTooNew as exc:
        _error(f"{exc}")
        raise typer.Exit(2) from None
    try:
        return make_context(config, db, clock or SystemClock())
    except ConfigError as exc:
        _error(f"{exc}")
        raise typer.Exit(2) from None


def _error(text: str, prefix: bool = True) -> None:
    """One plain line on stderr (no wrapping: scripts and people grep these)."""
    sys.stderr.write(f"{'rootnotify: ' if prefix else ''}{text}\n")


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@app.command()
def serve() -> None:
    """Run the SMTP listener, IMAP poller, scheduler and outbox sender until SIGTERM."""
    from bot.supervisor import serve as run

    config = _config()
    _context().db.dispose()  # checks the database and the certificates before listening
    try:
        code = asyncio.run(run(config, log_json=state.log_json, log_level=state.log_level))
    except ConfigError as exc:  # e.g. the IMAP server refused the configured login
        _error(f"{exc}")
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def web() -> None:
    """Run the staff web view alone, on the same database as `serve`, until SIGTERM."""
    from bot.web.server import run_alone

    config = _config()
    _context().db.dispose()  # checks the database before listening
    try:
        code = asyncio.run(run_alone(config))
    except OSError as exc:  # e.g. the port is taken
        _error(f"web: cannot listen on {config.web.host}:{config.web.port}: {exc.strerror}")
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command()
def ingest(paths: Annotated[list[Path], typer.Argument(help=".eml files, mbox files, maildirs")]
           ) -> None:
    """Store messages from files as if they had arrived by SMTP, then process them."""
    from rich.progress import Progress

    from bot.intake.files import count_messages
    from bot.intake.files import ingest as run_ingest
    from bot.pipeline import process_pending

    ctx = _context()
    total = count_messages([p for p in paths if p.exists()])
    if total > 20 and console.is_terminal:
        with Progress(console=err) as progress:
            task = progress.add_task("ingesting", total=total)
            report = run_ingest(ctx.db, ctx.clock, paths, ctx.config.smtp.max_message_size,
                                progress=lambda: progress.advance(task))
    else:
        report = run_ingest(ctx.db, ctx.clock, paths, ctx.config.smtp.max_message_size)
    processed = process_pending(ctx)
    for where, why in report.refused:
        _error(f"refused {where}: {why}", prefix=False)
    console.print(f"{report.stored} stored, {report.duplicates} duplicate(s), "
                  f"{len(report.refused)} refused; {processed.processed} processed, "
                  f"{processed.failed} failed, {processed.parked} parked", markup=False)
    if report.refused or processed.failed or processed.parked:
        raise typer.Exit(1)


@app.command()
def tick(now: Annotated[str | None, typer.Option("--now", help="ISO 8601 time with Z or offset")]
         = None) -> None:
    """Run the pipeline, the scheduler and the outbox once (at --now, if given)."""
    from bot.outbox.sender import deliver_due, transport_for
    from bot.pipeline import process_pending
    from bot.scheduler import run_scheduler

    try:
        clock: Clock = FixedClock(parse_iso(now)) if now else SystemClock()
    except ValueError as exc:
        _error(f"--now: {exc}")
        raise typer.Exit(2) from None
    ctx = _context(clock)
    pipeline = process_pending(ctx)
    scheduled = run_scheduler(ctx)
    delivered = deliver_due(ctx, transport_for(ctx.config))
    console.print(
        f"tick at {iso(ctx.clock.now())}: {pipeline.processed} message(s) processed; "
        f"scheduler {sum(scheduled.done.values())} action(s); "
        f"{delivered.sent} sent, {delivered.retried} deferred, {delivered.failed} failed",
        markup=False)
    if scheduled.errors:
        for name, error in scheduled.errors.items():
            _error(f"scheduler job {name} failed: {error}", prefix=False)
        raise typer.Exit(1)


@app.command()
def incidents(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
    only_open: Annotated[bool, typer.Option("--open", help="Only open incidents")] = False,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only incidents with an overdue "
                                          "deadline")] = False,
    ca: Annotated[str | None, typer.Option("--ca", metavar="NAME", help="Only this CA's "
                                           "incidents (its configured name, any case)")] = None,
) -> None:
    """List incidents: CA, category, status, 24-hour verdict, next deadline, overdue count."""
    from bot.textviews import incidents_table
    from bot.views import incidents_json

    ctx = _context()
    with ctx.db.read() as session:
        rows = incidents_json(session, ctx.clock.now())
    if only_open:
        rows = [r for r in rows if r["status"] == "open"]
    if overdue:
        rows = [r for r in rows if r["overdue"]]
    if ca is not None:
        rows = [r for r in rows if r["ca"].casefold() == ca.strip().casefold()]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        console.print("no incidents" + (" match" if only_open or overdue or ca else ""),
                      markup=False)
        return
    # Piped into grep or a mail, a table is read line by line: one incident a line.
    wide = console if console.is_terminal else Console(width=PIPED_TABLE_WIDTH)
    wide.print(incidents_table(rows, ctx.config.bot.timezone))


def _incident_data(ctx: Context, incident_id: str) -> dict[str, Any]:
    from bot.views import incident_json
    from storage import queries

    with ctx.db.read() as session:
        incident = queries.incident(session, incident_id)
        if incident is None:
            _error(f"no incident {incident_id}")
            raise typer.Exit(1)
        return incident_json(session, incident, ctx.clock.now())


@app.command()
def show(incident_id: Annotated[str, typer.Argument(metavar="ID")],
         as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
         = False) -> None:
    """Show one incident: form and its history, deadlines, notices, messages and the timeline."""
    from bot.textviews import print_incident

    ctx = _context()
    data = _incident_data(ctx, incident_id)
    if as_json:
        _print_json(data)
        return
    print_incident(console, data, ctx.config.bot.timezone)


@app.command()
def export(
    incident_id: Annotated[str, typer.Argument(metavar="ID")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="md, json or csv")] = "md",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead "
                                                "of standard output")] = None,
    with_raw: Annotated[bool, typer.Option("--with-raw", help="A zip: the dossier, every raw "
                                           "message as .eml, and MANIFEST.sha256 (needs -o)")]
    = False,
) -> None:
    """The incident dossier: a Markdown report, all of it as JSON, or its certificates as CSV."""
    from bot.export import FORMATS, write_archive, write_format
    from storage import queries

    if fmt not in FORMATS:
        _error(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
        raise typer.Exit(2)
    if with_raw and output is None:
        _error("--with-raw writes a zip file: give -o PATH")
        raise typer.Exit(2)
    ctx = _context()
    with ctx.db.read() as session:
        incident = queries.incident(session, incident_id)
        if incident is None:
            _error(f"no incident {incident_id}")
            raise typer.Exit(1)
        if with_raw:
            assert output is not None
            count = write_archive(session, ctx, incident, fmt, output)
            err.print(f"{output}: {incident.id} dossier ({fmt}) with {count} raw message(s) "
                      "and MANIFEST.sha256", markup=False, highlight=False)
        elif output is None:
            write_format(session, ctx, incident, fmt, sys.stdout)
            sys.stdout.flush()
        else:
            with output.open("w", encoding="utf-8", newline="") as fh:
                write_format(session, ctx, incident, fmt, fh)


@app.command()
def reprocess(incoming_id: Annotated[int | None, typer.Argument(metavar="ID")] = None,
              failed: Annotated[bool, typer.Option("--failed")] = False) -> None:
    """Process a stored message again (by its number), or every failed and parked one."""
    from bot.pipeline import process_pending, requeue

    if incoming_id is None and not failed:
        _error("give a message number or --failed")
        raise typer.Exit(2)
    ctx = _context()
    count = requeue(ctx, incoming_id, failed_only=failed)
    report = process_pending(ctx)
    console.print(f"{count} message(s) requeued; {report.processed} processed, "
                  f"{report.failed} failed, {report.parked} parked", markup=False)
    if report.failed or report.parked:
        raise typer.Exit(1)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
           = False) -> None:
    """Health of the queues and workers; exits 1 when something needs a person."""
    from bot.health import health
    from bot.textviews import print_health

    ctx = _context()
    data = health(ctx)
    if as_json:
        _print_json(data)
    else:
        print_health(console, data, ctx.config.bot.timezone)
    if data["needs_attention"]:
        raise typer.Exit(1)


@app.command()
def quarantine(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Mail from unknown senders, kept and never answered."""
    from storage import queries

    ctx = _context()
    with ctx.db.read() as session:
        rows = [{"id": m.id, "message_id": m.message_id, "from": m.from_address,
                 "subject": m.subject, "received_at": iso(m.received_at), "reason": m.note}
                for m in queries.quarantined(session)]
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        console.print(f"{r['id']:>6}  {r['received_at']}  {r['from']}  {r['subject']}",
                      markup=False)


@app.command("check-config")
def check_config() -> None:
    """Load the configuration, read every file it names, reach the relay and IMAP server.

    Exits 2 when the configuration itself does not load, 1 when something it
    points at is wrong (a certificate, a key, the database, the relay, IMAP).
    """
    from bot.checkconfig import check_world

    config = _config()
    findings = check_world(config, SystemClock().now())
    try:
        open_database(config.storage_url).dispose()
        findings.ok.append(f"database {config.storage_url} (schema revision {schema_head()})")
    except Exception as exc:  # an unreachable or too-new database is a finding like any other
        findings.problems.append(f"database {config.storage_url}: {exc}")
    console.print(f"configuration {config.path}: intake address {config.bot.address}, "
                  f"ruleset {config.bot.ruleset.name}, outgoing {config.outgoing.mode}, "
                  f"IMAP {'on' if config.imap.enabled else 'off'}", markup=False)
    for ca in config.cas:
        console.print(f"  CA {ca.name}: {len(ca.contacts)} contact(s), "
                      f"{len(ca.smime_anchors)} S/MIME anchor file(s), {len(ca.roots)} root "
                      "file(s)", markup=False)
    console.print(f"  staff: {len(config.staff.addresses)} address(es), auth "
                  f"{config.staff.auth}", markup=False)
    for line in findings.ok:
        console.print(f"  ok: {line}", markup=False, highlight=False)
    for line in findings.problems:
        _error(line)
    if findings.problems:
        console.print(f"{len(findings.problems)} problem(s)", markup=False)
        raise typer.Exit(1)
    console.print("configuration is valid", markup=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
