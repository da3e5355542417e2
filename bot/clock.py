"""The one clock: every decision about time asks it for "now"."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The wall clock. The only place in rootnotify that reads it."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that says what it is told; for `tick --now` and for tests."""

    def __init__(self, at: datetime) -> None:
        self._at = as_utc(at)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = as_utc(at)

    def advance(self, **delta: float) -> datetime:
        from datetime import timedelta

        self._at = self._at + timedelta(**delta)
        return self._at


def as_utc(at: datetime) -> datetime:
    """`at` in UTC; a naive datetime is taken to be UTC already (as stored by SQLite)."""
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)


def parse_iso(text: str) -> datetime:
    """ISO 8601 with `Z` or an offset, as `tick --now` takes it."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (add Z or an offset)")
    return value.astimezone(UTC)


def iso(at: datetime | None) -> str | None:
    """The contract's time format: ISO 8601 in UTC with an explicit offset."""
    if at is None:
        return None
    if at.tzinfo is None:  # UTC already (as_utc); lists of thousands read times so
        return at.isoformat(timespec="seconds") + "+00:00"
    return as_utc(at).isoformat(timespec="seconds")
