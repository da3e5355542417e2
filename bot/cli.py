"""The `rootnotify` command line: serve, ingest, tick, and the operator's views."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import sqlalchemy.exc
import typer

from bot.clibase import (
    app,
    console,
    err,
    error,
    load,
    print_json,
    state,
    writable_data_dir,
)
from bot.clibase import context as _context
from bot.clock import Clock, FixedClock, SystemClock, iso, parse_iso
from bot.errors import ConfigError, OperatorError
from storage.migrate import SchemaTooNew

# `tick --now` this far ahead of the clock is still "now" (clocks of two hosts drift).
FUTURE_TOLERANCE = timedelta(minutes=5)
# Below this many messages, ingest is over before a bar would say anything.
PROGRESS_FROM = 20

_error = error
_print_json = print_json
_config = load


@app.command()
def serve() -> None:
    """Run the SMTP listener, IMAP poller, scheduler and outbox sender until SIGTERM or Ctrl-C.

    Stops at any moment, start-up included: what is in flight is finished, and the exit
    status is 0.
    """
    from bot.service.supervisor import serve as run

    try:
        config = _config()
        if config.imap.enabled:
            config.imap.require_password()
        writable_data_dir(config)
        _context().db.dispose()  # checks the database and the certificates before listening
        code = asyncio.run(run(config, log_json=state.log_json, log_level=state.log_level))
    except KeyboardInterrupt:  # SIGINT or SIGTERM before the supervisor took them over
        err.print("rootnotify: stopped during start-up", markup=False, highlight=False)
        code = 0
    raise typer.Exit(code)


@app.command()
def web() -> None:
    """Run the staff web view alone, on the same database as `serve`, until SIGTERM.

    Example: rootnotify --config /etc/rootnotify/config.toml web
    """
    from bot.operator.web.server import run_alone

    config = _config()
    _context().db.dispose()  # checks the database before listening
    try:
        code = asyncio.run(run_alone(config))
    except OSError as exc:  # e.g. the port is taken
        _error(f"web: cannot listen on {config.web.host}:{config.web.port}: {exc.strerror}")
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command()
def ingest(paths: Annotated[list[Path], typer.Argument(help=".eml files, mbox files, maildirs",
                                                       show_default=False)],
           quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no "
                                               "log lines; only refusals and the summary")]
           = False) -> None:
    """Store messages from files as if they had arrived by SMTP, then process them.

    Only mail is taken: a folder must be a maildir (it is not walked), a file an mbox or
    one mail. Exit 1 when a file given was refused or one of its messages failed.

    Example: rootnotify ingest old-mail.mbox Maildir/ notification.eml
    """
    from bot.intake.files import count_messages
    from bot.intake.files import ingest as run_ingest
    from bot.service.pipeline import process_pending
    from storage import queries
    from storage.models import STATE_FAILED, STATE_PARKED

    if quiet or (err.is_terminal and not state.verbose):
        # On a terminal, one line per message drowns the bar and the refusals.
        logging.getLogger().setLevel(logging.WARNING)
    ctx = _context()
    total = count_messages([p for p in paths if p.exists()])
    with _progress(total, quiet) as advance:
        report = run_ingest(ctx.db, ctx.clock, paths, ctx.config.smtp.max_message_size,
                            progress=lambda: advance(1))
        processed = process_pending(ctx, on_done=advance)
    for where, why in report.refused:
        _error(f"refused {where}: {why}", prefix=False)
    with ctx.db.read() as session:
        ours = queries.message_states(session, report.ids)
        everywhere = queries.message_state_counts(session)
    failed = sum(1 for s in ours.values() if s == STATE_FAILED)
    parked = sum(1 for s in ours.values() if s == STATE_PARKED)
    console.print(f"{report.stored} stored, {report.duplicates} duplicate(s), "
                  f"{len(report.refused)} refused; {processed.processed} processed, "
                  f"{failed} failed, {parked} parked", markup=False, highlight=False)
    older = (everywhere.get(STATE_FAILED, 0) + everywhere.get(STATE_PARKED, 0)
             - failed - parked)
    if older > 0:
        _error(f"note: {older} older message(s) failed or parked; see rootnotify status",
               prefix=False)
    if report.refused or failed or parked:
        raise typer.Exit(1)


@contextlib.contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Callable[[int], None]]:
    """One bar over storing and processing (each message twice), on a terminal only."""
    if quiet or total <= PROGRESS_FROM or not err.is_terminal:
        yield lambda _n: None
        return
    from rich.progress import Progress

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("storing and processing", total=2 * total)
        yield lambda n: progress.advance(task, n)


@app.command()
def tick(now: Annotated[str | None, typer.Option("--now", metavar="ISO8601",
                                                 help="ISO 8601 time with Z or offset")] = None,
         dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be sent; "
                                               "change nothing")] = False,
         force: Annotated[bool, typer.Option("--force", help="allow --now ahead of the clock "
                                             "on a database with mail")] = False) -> None:
    """Run the pipeline, the scheduler and the outbox once (at --now, if given).

    A --now ahead of the clock writes future-dated events into the incidents' timelines:
    on a database with mail it is refused unless --force; --dry-run shows what it would
    send without changing anything.

    Examples: rootnotify tick;  rootnotify tick --now 2026-12-06T09:00Z --dry-run
    """
    from bot.outbox.sender import deliver_due, transport_for
    from bot.service.pipeline import process_pending
    from bot.service.scheduler import run_scheduler

    try:
        clock: Clock = FixedClock(parse_iso(now)) if now else SystemClock()
    except ValueError as exc:
        _error(f"--now: {exc}")
        raise typer.Exit(2) from None
    if dry_run:
        from bot.operator.dryrun import preview_tick

        # Its log lines would tell of events on the copy as if they had happened.
        logging.getLogger().setLevel(logging.WARNING)
        processed, mails = preview_tick(_config(), clock)
        sys.stdout.write(f"dry run at {iso(clock.now())}: {processed} message(s) would be "
                         f"processed; {len(mails)} mail(s) would be sent; nothing was "
                         "changed\n")
        for mail in mails:  # one a line, unwrapped: grep-able
            sys.stdout.write(f"  {mail.kind} to {mail.to}: {mail.subject}\n")
        return
    ctx = _context(clock)
    ahead = clock.now() - SystemClock().now()
    if ahead > FUTURE_TOLERANCE and not force:
        from storage import queries

        with ctx.db.read() as session:
            has_mail = bool(queries.message_state_counts(session))
        if has_mail:
            raise OperatorError(
                f"--now {iso(clock.now())} is {_duration(ahead)} ahead of the clock: on a "
                "database with mail that writes future-dated events into the timelines "
                "(and the dossiers); see what it would do with --dry-run, or give --force")
    pipeline = process_pending(ctx)
    scheduled = run_scheduler(ctx)
    delivered = deliver_due(ctx, transport_for(ctx.config))
    actions = ("running on another host" if scheduled.elsewhere
               else f"{sum(scheduled.done.values())} action(s)")
    console.print(
        f"tick at {iso(ctx.clock.now())}: {pipeline.processed} message(s) processed; "
        f"scheduler {actions}; "
        f"{delivered.sent} sent, {delivered.retried} deferred, {delivered.failed} failed",
        markup=False)
    if scheduled.errors:
        for name, error in scheduled.errors.items():
            _error(f"scheduler job {name} failed: {error}", prefix=False)
        raise typer.Exit(1)


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return " ".join(f"{n} {unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "min"))
                    if n) or "less than a minute"


# The read commands register themselves on `app` here, keeping `--help` in its order.
from bot import cliviews  # noqa: E402,F401  # isort: skip


@app.command("check-config")
def check_config() -> None:
    """Load the configuration, read every file it names, look at the database, reach the relay
    and IMAP; change nothing.

    Lists every problem. Exits 2 when the configuration file itself is wrong (a key, a
    value), 1 when something it points at is (a missing or unreadable file, a certificate,
    the database, a login refused). A relay or IMAP server that cannot be reached now is a
    warning (exit 0): their outage must not keep the listener down.
    """
    from bot.config import config_path as path_of_config
    from bot.config import load_config_listing_missing
    from bot.operator.checkconfig import check_world

    config, missing = load_config_listing_missing(path_of_config(state.config_option))
    findings = check_world(config, SystemClock().now(), missing)
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
    for line in findings.warnings:
        _error(f"warning: {line}")
    for line in findings.problems:
        _error(line)
    summary = f"{len(findings.problems)} problem(s), {len(findings.warnings)} warning(s)"
    if findings.problems:
        console.print(summary, markup=False)
        raise typer.Exit(1)
    console.print(f"configuration is valid ({summary})", markup=False)


# The commands about stored messages register themselves on `app`, after these.
from bot import climessages  # noqa: E402,F401  # isort: skip


def _stop_on_sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Run a command; an expected failure is one line on stderr and its exit status."""
    # SIGTERM before a command takes it over ends it as Ctrl-C does, quietly.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        app(prog_name="rootnotify")  # click turns usage errors and exits into their status itself
    except (ConfigError, SchemaTooNew) as exc:
        error(str(exc))
        sys.exit(2)
    except OperatorError as exc:
        error(str(exc))
        sys.exit(1)
    except OSError as exc:
        error(_os_error(exc))
        sys.exit(1)
    except sqlalchemy.exc.OperationalError as exc:
        error(f"database: {exc.orig}")
        sys.exit(1)
    except Exception as exc:
        if state.verbose:
            raise
        error(f"internal error: {type(exc).__name__}: {exc} (rerun with -v for the traceback)")
        sys.exit(1)


def _os_error(exc: OSError) -> str:
    """`PATH: reason` for a file error, as the shell's tools say it."""
    where = exc.filename if exc.filename is not None else ""
    why = exc.strerror or str(exc)
    return f"{where}: {why}" if where else why


if __name__ == "__main__":
    main()
