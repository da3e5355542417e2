"""R1: when the 24-hour notification window ends, and whether the notice came in time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.rules.rulesets import NOTIFICATION_WINDOW, Ruleset


@dataclass(frozen=True)
class Timeliness:
    clock_started_by: str | None  # the form key that started the 24-hour clock
    clock_started_at: datetime | None
    deadline: datetime | None
    on_time: bool | None  # None: no time was given to start the clock
    late_by: timedelta | None

    def verdict(self) -> str:
        if self.deadline is None:
            return "cannot be judged: the form gives no time of the incident or of its discovery"
        if self.on_time:
            return "met (received within 24 hours)"
        return f"missed: late by {format_span(self.late_by or timedelta())}"

    def explanation(self) -> str | None:
        if self.deadline is None:
            return None
        started = "the incident" if self.clock_started_by == "incident_at" else "its discovery"
        return (f"the 24 hours run from {started}, "
                f"{self.clock_started_at:%Y-%m-%d %H:%M} UTC, "
                f"to {self.deadline:%Y-%m-%d %H:%M} UTC")


def compute_r1(ruleset: Ruleset, times: dict[str, datetime | None],
               received_at: datetime) -> Timeliness:
    """The deadline starts at the first known time of `ruleset.clock_starts` (R1)."""
    for key in ruleset.clock_starts:
        start = times.get(key)
        if start is not None:
            deadline = start + NOTIFICATION_WINDOW
            late = received_at - deadline
            on_time = late <= timedelta(0)
            return Timeliness(key, start, deadline, on_time, None if on_time else late)
    return Timeliness(None, None, None, None, None)


def format_span(span: timedelta) -> str:
    """'3 h 12 min', '2 d 1 h', '45 s' — the way a person says a duration."""
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days} d")
    if hours:
        parts.append(f"{hours} h")
    if minutes and not days:
        parts.append(f"{minutes} min")
    if not parts:
        parts.append(f"{secs} s")
    return " ".join(parts)
