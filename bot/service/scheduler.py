"""Due deadlines to reminders and escalations: the jobs that run on every tick.

Each job takes the context and "now" and does its work in its own
transactions; jobs are listed in `JOBS` in the order they run. A job must be
idempotent: two schedulers at the same time, or one run twice, send nothing
twice (the unique keys in `storage.models` are what guarantee it). On
PostgreSQL one host at a time runs them (storage.leader) all the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from bot.clock import iso
from bot.context import Context
from bot.decide.incident.cadence import apply_defaults
from bot.decide.incident.reminders import remind_due
from bot.decide.staff.digest import send_digest
from storage.leader import scheduler_turn
from storage.models import Meta

log = logging.getLogger("rootnotify.scheduler")

Job = Callable[[Context, datetime], int]

# name → job; each returns how many things it did (mails queued, states changed).
# R3 defaults first: they may open deadlines the reminder pass then looks at.
JOBS: dict[str, Job] = {
    "r3-defaults": apply_defaults,
    "reminders": remind_due,
    "digest": send_digest,
}


@dataclass
class SchedulerReport:
    done: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    elsewhere: bool = False  # another host held the scheduler's lock: nothing was run


def run_scheduler(ctx: Context) -> SchedulerReport:
    with scheduler_turn(ctx.db) as mine:
        if not mine:
            log.info("scheduler not run: another host is running it")
            return SchedulerReport(elsewhere=True)
        return _run_jobs(ctx)


def _run_jobs(ctx: Context) -> SchedulerReport:
    now = ctx.clock.now()
    report = SchedulerReport()
    for name, job in JOBS.items():
        try:
            report.done[name] = job(ctx, now)
        except Exception as exc:  # one failing job must not stop the others
            log.exception("scheduler job %s failed", name)
            report.errors[name] = f"{type(exc).__name__}: {exc}"
    with ctx.db.write() as session:
        row = session.get(Meta, "scheduler_last_run") or Meta(key="scheduler_last_run", value="")
        row.value = iso(now) or ""
        session.add(row)
    return report
