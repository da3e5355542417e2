"""`rootnotify status`: the health of the queues, and whether a person is needed."""

from __future__ import annotations

from typing import Any

from bot.clock import as_utc, iso
from bot.context import Context
from storage import queries
from storage.models import STATE_FAILED, STATE_PARKED, STATE_STORED


def health(ctx: Context) -> dict[str, Any]:
    now = ctx.clock.now()
    with ctx.db.read() as session:
        states = queries.message_state_counts(session)
        depth, oldest_out = queries.outbox_depth(session)
        oldest_in = queries.oldest_unprocessed(session)
        overdue = queries.overdue_deadlines(session, now)
        quarantined = len(queries.quarantined(session))
        last = queries.last_received(session)
        out_states = queries.outbound_status_counts(session)
        imap_rows = queries.imap_states(session)
        scheduler_last = queries.meta(session, "scheduler_last_run")
    backlog = states.get(STATE_STORED, 0) + states.get(STATE_FAILED, 0)
    imap = {r.folder: {"last_success_at": iso(r.last_success_at), "last_error": r.last_error,
                       "uidvalidity": r.uidvalidity, "last_uid": r.last_uid}
            for r in imap_rows}
    imap_stale = bool(ctx.config.imap.enabled and any(
        r.last_success_at is None
        or (now - as_utc(r.last_success_at)).total_seconds() > ctx.config.imap.alert_after
        for r in imap_rows))
    needs = []
    if states.get(STATE_PARKED):
        needs.append(f"{states[STATE_PARKED]} parked message(s)")
    if out_states.get("failed"):
        needs.append(f"{out_states['failed']} outgoing mail(s) failed")
    if imap_stale:
        needs.append("no successful IMAP poll recently")
    return {
        "messages": states,
        "backlog": backlog,
        "oldest_unprocessed_at": iso(oldest_in),
        "oldest_unprocessed_age_seconds":
            int((now - oldest_in).total_seconds()) if oldest_in else None,
        "failed": states.get(STATE_FAILED, 0),
        "parked": states.get(STATE_PARKED, 0),
        "quarantined": quarantined,
        "last_received": {k: iso(v) for k, v in last.items()},
        "outbox": {"queued": depth, "oldest_queued_at": iso(oldest_out), **out_states},
        "overdue_deadlines": len(overdue),
        "imap": imap,
        "scheduler_last_run": scheduler_last,
        "needs_attention": needs,
    }
