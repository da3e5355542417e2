"""R3 when staff set no interval: what each ruleset does once the 24-hour window has passed.

2019-03: the incident records that the CA reports as it discovers new
information (no deadline). 2026-02: an update is due every 24 hours until the
incident is resolved (bot/decide/handlers/resolution.py), each one reminded like any
deadline. The choice is the ruleset's `reports_default`; the table below says
what each value does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from bot.context import Context
from bot.decide.incident.deadlines import open_deadline
from bot.rules.rulesets import REPORTS_REQUEST_WINDOW, get_ruleset
from storage import queries
from storage.models import Event, Incident

log = logging.getLogger("rootnotify.cadence")

MODE_AS_DISCOVERED = "as-discovered"
MODE_EVERY = "every"  # staff set the interval (/request reports every …)
MODE_DAILY_UPDATE = "daily-update"
# Incidents looked at per query; the job repeats until none is left.
BATCH = 200


@dataclass(frozen=True)
class Default:
    wait: timedelta  # how long after the notification the default applies
    mode: str
    deadline_kind: str | None  # the repeating deadline it opens, if any


# ruleset.reports_default → what happens. 2026-02's first update is due 24 h
# after the notification, so it is opened at once (and reminded before it is due).
DEFAULTS: dict[str, Default] = {
    "as-discovered": Default(REPORTS_REQUEST_WINDOW, MODE_AS_DISCOVERED, None),
    "every-24h": Default(timedelta(0), MODE_DAILY_UPDATE, "update"),
}


def apply_defaults(ctx: Context, now: datetime) -> int:
    """Scheduler job: settle the report mode of incidents whose window has passed."""
    done = 0
    skipped: set[str] = set()
    while True:
        with ctx.db.write() as session:
            rows = [i for i in queries.incidents_without_reports_mode(session, now, BATCH)
                    if i.id not in skipped]
            if not rows:
                return done
            for incident in rows:
                if _apply(session, incident, now):
                    done += 1
                else:
                    skipped.add(incident.id)


def _apply(session: Session, incident: Incident, now: datetime) -> bool:
    ruleset = get_ruleset(incident.ruleset)
    default = DEFAULTS[ruleset.reports_default]
    if now < incident.notified_at + default.wait:
        return False
    incident.reports_mode = default.mode
    session.add(incident)
    if default.deadline_kind is not None and ruleset.default_update_interval is not None \
            and incident.resolved_at is None:
        every = ruleset.default_update_interval
        incident.report_interval_seconds = int(every.total_seconds())
        open_deadline(session, incident, default.deadline_kind, incident.notified_at + every,
                      now, interval=every)
        summary = (f"ruleset {ruleset.name}: the CA sends an update every "
                   f"{every.total_seconds() / 3600:g} h until the incident is resolved")
    elif incident.resolved_at is not None:
        summary = (f"ruleset {ruleset.name}: no daily updates, the incident was resolved "
                   f"{incident.resolved_at:%Y-%m-%d %H:%M} UTC")
    else:
        summary = (f"no report interval requested within 24 hours: the CA reports as it "
                   f"discovers new information (ruleset {ruleset.name})")
    session.add(Event(incident_id=incident.id, at=now, kind=f"reports-{default.mode}",
                      rule="R3", summary=summary))
    log.info("incident %s: %s", incident.id, summary)
    return True


def restart(session: Session, incident: Incident, now: datetime) -> str | None:
    """After /reopen: open the next deadline of the incident's cadence; returns its kind."""
    if not incident.report_interval_seconds:
        return None
    kind = {MODE_EVERY: "periodic-report", MODE_DAILY_UPDATE: "update"}.get(
        incident.reports_mode or "")
    if kind is None or (kind == "update" and incident.resolved_at is not None):
        return None  # the daily updates ended when the incident was resolved
    every = timedelta(seconds=incident.report_interval_seconds)
    open_deadline(session, incident, kind, now + every, now, interval=every)
    return kind
