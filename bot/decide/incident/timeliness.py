"""R1: when the 24-hour notification window ends, and whether the notice came in time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.rules.rulesets import NOTIFICATION_WINDOW, Ruleset

# A form time later than the mail's receipt by more than this is impossible,
# not a clock a few minutes fast (senders' clocks and NTP drift, a time
# typed rounded up to the quarter hour).
CLOCK_SKEW = timedelta(minutes=15)
_NAMES = {"incident_at": "the time of the incident", "discovered_at": "the time of discovery"}


@dataclass(frozen=True)
class Timeliness:
    clock_started_by: str | None  # the form key that started the 24-hour clock
    clock_started_at: datetime | None
    deadline: datetime | None
    on_time: bool | None  # None: no time was given, or the times given are impossible
    late_by: timedelta | None
    # Why the form's times cannot be true (after the receipt, discovery before
    # the incident): the verdict waits until the CA corrects them.
    impossible: tuple[str, ...] = ()

    def verdict(self) -> str:
        if self.impossible:
            return ("cannot be judged until the form's times are corrected: "
                    + "; ".join(self.impossible))
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
    impossible = impossible_times(times, received_at)
    for key in ruleset.clock_starts:
        start = times.get(key)
        if start is not None:
            deadline = start + NOTIFICATION_WINDOW
            if impossible:
                return Timeliness(key, start, deadline, None, None, impossible)
            late = received_at - deadline
            on_time = late <= timedelta(0)
            return Timeliness(key, start, deadline, on_time, None if on_time else late)
    return Timeliness(None, None, None, None, None, impossible)


def impossible_times(times: dict[str, datetime | None],
                     received_at: datetime) -> tuple[str, ...]:
    """What in the form's times cannot be: a time after the mail arrived, a discovery
    before the incident. Each as a sentence the CA and staff read."""
    found = []
    for key, name in _NAMES.items():
        at = times.get(key)
        if at is not None and at > received_at + CLOCK_SKEW:
            found.append(f"{name} ({at:%Y-%m-%d %H:%M} UTC) is after the notification "
                         f"was received ({received_at:%Y-%m-%d %H:%M} UTC)")
    incident, discovered = times.get("incident_at"), times.get("discovered_at")
    if incident is not None and discovered is not None and discovered < incident:
        found.append(f"the discovery ({discovered:%Y-%m-%d %H:%M} UTC) is before the "
                     f"incident ({incident:%Y-%m-%d %H:%M} UTC)")
    return tuple(found)


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
