"""`rootnotify status`: the health of the queues, and whether a person is needed.

"Needs attention" means the bot itself needs a person (something is stuck,
parked or failed), so `status` can feed a monitor. Overdue deadlines are
reported too, but they are the CAs' lateness, escalated to staff by mail;
they turn the monitor red only when the scheduler that escalates them is not
running.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.clock import as_utc, iso
from bot.context import Context
from bot.node import nodes_report
from storage import queries
from storage.models import STATE_DROPPED, STATE_FAILED, STATE_PARKED, STATE_STORED
from storage.spool import pending_bytes

# `serve` processes a stored message within seconds; one waiting this long
# means no pipeline is running (or it is stuck).
STUCK_BACKLOG = timedelta(minutes=15)
# `serve` hands queued mail to the relay within 5 s; retries back off up to 1 h,
# so a mail still queued after 30 min means the relay has been failing for a while.
STUCK_OUTBOX = timedelta(minutes=30)
# The scheduler runs every `[scheduler] interval` seconds; this many missed
# runs (and at least STALE_SCHEDULER_MIN) means it is not running.
STALE_SCHEDULER_RUNS = 10
STALE_SCHEDULER_MIN = timedelta(minutes=15)
# Problem messages listed in full; the counts say how many more there are.
PROBLEMS_SHOWN = 20
# Replies the per-sender daily cap suppressed are counted over a day, the cap's
# own period: a contact went unanswered, so a person looks (a loop, or a
# flood of mail forged in the contact's name).
SUPPRESSED_LOOKBACK = timedelta(days=1)


def _age(now: datetime, at: datetime | None) -> int | None:
    return int((now - as_utc(at)).total_seconds()) if at is not None else None


def health(ctx: Context) -> dict[str, Any]:
    now = ctx.clock.now()
    with ctx.db.read() as session:
        states = queries.message_state_counts(session)
        depth, oldest_out = queries.outbox_depth(session)
        oldest_in = queries.oldest_unprocessed(session)
        overdue = [{"incident": d.incident_id, "kind": d.kind, "due_at": iso(d.due_at),
                    "rule": d.rule} for d in queries.overdue_deadlines(session, now)]
        open_deadlines = queries.open_deadline_count(session)
        quarantined = len(queries.quarantined(session))
        suppressed = queries.suppressed_replies_since(session, now - SUPPRESSED_LOOKBACK)
        last = queries.last_received(session)
        out_states = queries.outbound_status_counts(session)
        imap_rows = queries.imap_states(session)
        scheduler_last = queries.meta(session, "scheduler_last_run")
        nodes, node_needs = nodes_report(session, now)
        problems = [{"id": m.id, "state": m.state, "attempts": m.attempts,
                     "last_error": m.last_error, "message_id": m.message_id,
                     "received_at": iso(m.received_at)}
                    for m in queries.problem_messages(session)[:PROBLEMS_SHOWN]]
    backlog = states.get(STATE_STORED, 0) + states.get(STATE_FAILED, 0)
    imap = {r.folder: {"last_success_at": iso(r.last_success_at), "last_error": r.last_error,
                       "last_poll_at": iso(r.last_poll_at),
                       "uidvalidity": r.uidvalidity, "last_uid": r.last_uid}
            for r in imap_rows}
    successes = [as_utc(r.last_success_at) for r in imap_rows if r.last_success_at]
    last_imap = max(successes) if successes else None

    needs = []
    if states.get(STATE_PARKED):
        needs.append(f"{states[STATE_PARKED]} parked message(s): fix the cause, then "
                     "`rootnotify reprocess N`, or end one with `rootnotify drop N --reason …`")
    if out_states.get("failed"):
        needs.append(f"{out_states['failed']} outgoing mail(s) failed for good")
    if oldest_in is not None and now - as_utc(oldest_in) > STUCK_BACKLOG:
        needs.append(f"oldest unprocessed message waiting {_age(now, oldest_in)} s: "
                     "is `rootnotify serve` running? (a message failing again and again: "
                     "`rootnotify message N`, then `reprocess N` or `drop N --reason …`)")
    if oldest_out is not None and now - as_utc(oldest_out) > STUCK_OUTBOX:
        needs.append(f"oldest queued mail waiting {_age(now, oldest_out)} s: is the relay up?")
    if ctx.config.imap.enabled and (
            last_imap is None
            or (now - last_imap).total_seconds() > ctx.config.imap.alert_after):
        needs.append("no successful IMAP poll recently")
    if suppressed:
        needs.append(f"{sum(suppressed.values())} automatic repl(ies) suppressed by the daily "
                     f"cap in the last 24 h, to {', '.join(suppressed)}: a loop, or mail forged "
                     f"in a contact's name?")
    stale_after = max(STALE_SCHEDULER_MIN,
                      timedelta(seconds=ctx.config.scheduler.interval * STALE_SCHEDULER_RUNS))
    scheduler_age = _age(now, datetime.fromisoformat(scheduler_last)) if scheduler_last else None
    if open_deadlines and (scheduler_age is None or scheduler_age > stale_after.total_seconds()):
        needs.append(f"{open_deadlines} open deadline(s) but the scheduler "
                     + ("has never run" if scheduler_age is None
                        else f"last ran {scheduler_age} s ago"))
    needs += node_needs
    return {
        "messages": states,
        "backlog": backlog,
        # Mail `serve` accepted and spooled that the worker has not yet imported.
        "spool_pending_bytes": pending_bytes(ctx.db, ctx.config.bot.spool_dir,
                                             ctx.config.bot.node_name),
        "oldest_unprocessed_at": iso(oldest_in),
        "oldest_unprocessed_age_seconds": _age(now, oldest_in),
        "failed": states.get(STATE_FAILED, 0),
        "parked": states.get(STATE_PARKED, 0),
        "dropped": states.get(STATE_DROPPED, 0),
        "problem_messages": problems,
        "quarantined": quarantined,
        "replies_suppressed": {"last_24h": sum(suppressed.values()), "to": suppressed},
        "last_received": {k: iso(v) for k, v in last.items()},
        "outbox": {"queued": depth, "oldest_queued_at": iso(oldest_out),
                   "oldest_queued_age_seconds": _age(now, oldest_out), **out_states},
        "open_deadlines": open_deadlines,
        "overdue_deadlines": len(overdue),
        "overdue": overdue,
        "imap_enabled": ctx.config.imap.enabled,
        "last_imap_success_at": iso(last_imap),
        "imap": imap,
        "scheduler_last_run": scheduler_last,
        "scheduler_last_run_age_seconds": scheduler_age,
        "checked_at": iso(now),
        # One entry per `serve` that has run on this database (bot.node).
        "nodes": nodes,
        "needs_attention": needs,
    }
