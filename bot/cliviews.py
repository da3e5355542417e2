"""The operator's read commands: incidents, show, export, status, sample-form."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bot.clibase import (
    app,
    console,
    context,
    err,
    error,
    load,
    print_json,
    table_console,
)
from bot.clock import SystemClock, iso
from bot.context import Context

# Rows of `incidents` on a terminal unless --limit says otherwise.
PAGE_ROWS = 50


@app.command()
def incidents(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
    only_open: Annotated[bool, typer.Option("--open", help="Only open incidents")] = False,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only incidents with an overdue "
                                          "deadline")] = False,
    ca: Annotated[str | None, typer.Option("--ca", metavar="NAME", help="Only this CA's "
                                           "incidents (its configured name, any case)")] = None,
    limit: Annotated[int | None, typer.Option("--limit", metavar="N", min=1,
                                              help=f"At most N rows (a table on a terminal: "
                                              f"{PAGE_ROWS})")] = None,
    offset: Annotated[int, typer.Option("--offset", metavar="N", min=0,
                                        help="Skip the first N rows")] = 0,
) -> None:
    """List incidents: CA, category, status, 24-hour verdict, next deadline, overdue count.

    Example: rootnotify incidents --open --ca "Example CA"
    """
    from bot.operator.textviews import incidents_table
    from bot.operator.views import incidents_json

    ctx = context()
    if ca is not None and not any(c.name.casefold() == ca.strip().casefold()
                                  for c in ctx.config.cas):
        error(f"--ca: {ca!r} is not a configured CA (the [[ca]] names: "
               f"{', '.join(c.name for c in ctx.config.cas) or 'none'})")
        raise typer.Exit(2)
    with ctx.db.read() as session:
        rows = incidents_json(session, ctx.clock.now())
    if only_open:
        rows = [r for r in rows if r["status"] == "open"]
    if overdue:
        rows = [r for r in rows if r["overdue"]]
    if ca is not None:
        rows = [r for r in rows if r["ca"].casefold() == ca.strip().casefold()]
    matching = len(rows)
    if limit is None and not as_json and console.is_terminal:
        limit = PAGE_ROWS  # a screen, not a scroll of thousands
    rows = rows[offset:offset + limit if limit is not None else None]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no incidents" + (" match" if only_open or overdue or ca or offset
                                        else ""), markup=False)
        return
    # Piped into grep or a mail, a table is read line by line: one incident a line.
    table_console().print(incidents_table(rows, ctx.config.bot.timezone))
    if offset + len(rows) < matching:
        console.print(f"rows {offset + 1}-{offset + len(rows)} of {matching}; next: "
                      f"--offset {offset + len(rows)}", markup=False, highlight=False)


@app.command("sample-form")
def sample_form(ca: Annotated[str | None, typer.Option("--ca", metavar="NAME",
                                                     help="The CA named in the form (default: "
                                                     "the first [[ca]])")] = None) -> None:
    """Print a filled notification form dated now (incident 20 h ago, found 2 h ago), to try
    the bot: it is on time today, whenever today is.

    Example: rootnotify sample-form | swaks --server 127.0.0.1:8025 --from
    incidents@exampleca.test --to rootnotify@program.test --body -
    """
    config = load()
    name = ca or (config.cas[0].name if config.cas else "Example CA")
    now = SystemClock().now().replace(second=0, microsecond=0)
    sys.stdout.write(SAMPLE_FORM.format(
        ca=name, incident=iso(now - SAMPLE_INCIDENT_AGE), found=iso(now - SAMPLE_FOUND_AGE)))


# The sample's times, before now: well inside the 24-hour window (R1).
SAMPLE_INCIDENT_AGE = timedelta(hours=20)
SAMPLE_FOUND_AGE = timedelta(hours=2)
SAMPLE_FORM = """\
CA name: {ca}
Incident type: mis-issuance
When did the incident occur: {incident}
Who detected the incident: an external researcher
When the CA discovered the incident: {found}
Where the incident occurred: Example Issuing CA 2
Which roots (and end-entity certificates, if requested) were affected: Example Root R1
Which sub-CAs were affected: Example Issuing CA 2
What the CA believes the underlying cause is: a skipped CAA check
Remedial measures taken or planned: fixed; revoking 12 certificates
"""


def _incident_data(ctx: Context, incident_id: str) -> dict[str, Any]:
    from bot.operator.views import incident_json
    from storage import queries

    with ctx.db.read() as session:
        incident = queries.incident(session, incident_id)
        if incident is None:
            error(f"no incident {incident_id}")
            raise typer.Exit(1)
        return incident_json(session, incident, ctx.clock.now())


@app.command()
def show(incident_id: Annotated[str, typer.Argument(metavar="ID")],
         as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
         = False) -> None:
    """Show one incident: form and its history, deadlines, notices, messages and the timeline."""
    from bot.operator.textviews import print_incident

    ctx = context()
    data = _incident_data(ctx, incident_id)
    if as_json:
        print_json(data)
        return
    # Piped or redirected, lines are not wrapped: they are grepped and pasted.
    out = console if console.is_terminal else Console(soft_wrap=True, highlight=False)
    print_incident(out, data, ctx.config.bot.timezone)


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
    from bot.operator.export import FORMATS, write_archive, write_format
    from storage import queries

    if fmt not in FORMATS:
        error(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
        raise typer.Exit(2)
    if with_raw and output is None:
        error("--with-raw writes a zip file: give -o PATH")
        raise typer.Exit(2)
    ctx = context()
    with ctx.db.read() as session:
        incident = queries.incident(session, incident_id)
        if incident is None:
            error(f"no incident {incident_id}")
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
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
           = False) -> None:
    """Health of the queues and workers; exits 1 when something needs a person."""
    from bot.operator.health import health
    from bot.operator.textviews import print_health

    ctx = context()
    data = health(ctx)
    if as_json:
        print_json(data)
    else:
        print_health(console, data, ctx.config.bot.timezone)
    if data["needs_attention"]:
        raise typer.Exit(1)
