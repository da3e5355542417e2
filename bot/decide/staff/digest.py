"""The daily staff digest: overdue, due soon, proposals, forged commands, quarantine, caps.

Sent once per local day at `[scheduler] digest_hour` (the configured time
zone), to every staff address, with no incident tag, when it has something
to say (an empty digest on a quiet day, or a first start, is not mailed). Once: the day's `Meta`
row (`digest:YYYY-MM-DD`) is written in the same transaction as the mail, so
a second scheduler fails on its primary key and sends nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from bot.clock import as_utc, iso, parse_iso
from bot.compose.addressing import to_staff
from bot.context import Context
from bot.rules.deadlines import DEADLINE_KINDS_BY_NAME
from bot.rules.events import EventKind
from bot.rules.rulesets import RULESETS
from storage import queries
from storage.models import Deadline, Meta

log = logging.getLogger("rootnotify.digest")

# "Due within a week": the horizon staff plan over.
DUE_HORIZON = timedelta(days=7)
# Rows listed per section; a digest longer than this is unreadable and the
# command line lists everything (`rootnotify incidents`).
MAX_ROWS = 200
# With no earlier digest, "since the last digest" means the last day.
FIRST_LOOKBACK = timedelta(days=1)
LAST_DIGEST_KEY = "digest_last_at"
UNAUTHENTICATED_EVENT = EventKind.COMMAND_UNAUTHENTICATED


# Rulesets whose text asks the CA to disclose the incident publicly (2026-02).
DISCLOSING_RULESETS = tuple(r.name for r in RULESETS.values() if r.public_disclosure_required)


def send_digest(ctx: Context, now: datetime) -> int:
    """Scheduler job: the day's digest, once, from `digest_hour` on."""
    local = now.astimezone(ctx.config.bot.timezone)
    if local.hour < ctx.config.scheduler.digest_hour:
        return 0
    key = f"digest:{local.date().isoformat()}"
    try:
        with ctx.db.write() as session:
            if session.get(Meta, key) is not None:
                return 0
            last = queries.meta(session, LAST_DIGEST_KEY)
            since = parse_iso(last) if last else now - FIRST_LOOKBACK
            session.add(Meta(key=key, value=iso(now) or ""))
            session.flush()  # the day's key decides here who sends
            rows = queries.open_deadlines_due_before(session, now + DUE_HORIZON, MAX_ROWS)
            # The query returns only dated deadlines (NULL is never <= a time).
            overdue = [_line(d) for d in rows if as_utc(d.due_at or now) <= now]
            soon = [_line(d) for d in rows if as_utc(d.due_at or now) > now]
            proposals = queries.open_proposals(session, limit=MAX_ROWS)
            forged = queries.events_of_kind_since(session, UNAUTHENTICATED_EVENT, since, MAX_ROWS)
            quarantined = queries.quarantined_since(session, since, MAX_ROWS)
            suppressed = queries.suppressed_replies_since(session, since)
            undisclosed = queries.undisclosed_incidents(session, DISCLOSING_RULESETS, MAX_ROWS)
            if not (overdue or soon or proposals or forged or quarantined or suppressed
                    or undisclosed):
                # Nothing to report (a first start, a quiet day): no mail; the day's
                # key stays written, so the day is not looked at again.
                log.info("digest %s: nothing to report, not sent", key)
                return 0
            to_staff(session, ctx, "alert", "digest.txt.j2", day=local.date().isoformat(),
                     since=since, overdue=overdue, soon=soon, proposals=proposals,
                     forged=forged, quarantined=quarantined, undisclosed=undisclosed,
                     suppressed=suppressed, cap=ctx.config.bot.max_auto_replies_per_day)
            last_row = session.get(Meta, LAST_DIGEST_KEY) or Meta(key=LAST_DIGEST_KEY, value="")
            last_row.value = iso(now) or ""
            session.add(last_row)
    except IntegrityError:
        log.info("digest for %s already sent by another pass", key)
        return 0
    log.info("digest %s queued: %d overdue, %d due soon", key, len(overdue), len(soon))
    return 1


def _line(deadline: Deadline) -> dict[str, object]:
    spec = DEADLINE_KINDS_BY_NAME.get(deadline.kind)
    return {"incident_id": deadline.incident_id, "what": spec.label if spec else deadline.kind,
            "due_at": deadline.due_at, "text": deadline.text}
