"""Read the date and time a CA wrote on the form into one UTC instant, or say it cannot.

The 24-hour clock of R1 runs from these values, so this module never guesses:
a value is read only when a person would read it the same way. Accepted shapes
(the date, then optionally the time, then optionally the zone; or the time and
zone first, then "on" and the date):

- dates: `2026-11-25`, `2026/11/25`, `25 Nov 2026`, `25th November 2026`,
  `Nov 25, 2026`, `November 25 2026`, `25.11.2026` (dotted is always
  day.month.year), `11/25/2026` and `25/11/2026` (slashed or dashed numeric
  dates are read only when one of the first two numbers is above 12 or both
  are equal; `05/06/2026` is ambiguous and unreadable), with an optional
  weekday before them;
- times: `14:05`, `14:05:09`, `14:05:09.123`, `2:05pm`, `2 PM`, after `T`, a
  space, a comma or "at";
- zones: the names in `ZONE_ABBREVIATIONS`, `Z`, offsets `+01:00`, `+0100`,
  `UTC+1`, `GMT-05:00`, `(UTC+1)`, and IANA names such as `Europe/Berlin`.

Two-digit years, ambiguous abbreviations (CST, IST, …) and anything else →
`unreadable`. A time without a zone is read in the caller's default zone
(`assumed_zone`). A date without a time is read as the start of that day
(`date_only`), which is the earliest instant the CA can have meant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Longer text is a sentence, not a date; bounding it keeps the regexes cheap.
MAX_DATE_TEXT = 200

# Abbreviations with one meaning in practice. CST (US Central / China), IST
# (India / Ireland / Israel) and similar are left out on purpose: unreadable
# is better than a deadline eight hours off.
ZONE_ABBREVIATIONS: dict[str, int] = {  # minutes east of UTC
    "UTC": 0, "GMT": 0, "UT": 0, "Z": 0, "WET": 0,
    "WEST": 60, "BST": 60, "CET": 60, "MEZ": 60,
    "CEST": 120, "MESZ": 120, "EET": 120, "EEST": 180, "MSK": 180,
    "EST": -300, "EDT": -240, "CDT": -300, "MST": -420, "MDT": -360,
    "PST": -480, "PDT": -420, "AKST": -540, "AKDT": -480, "HST": -600,
    "JST": 540, "KST": 540, "HKT": 480, "SGT": 480, "AWST": 480,
    "AEST": 600, "AEDT": 660, "NZST": 720, "NZDT": 780,
}
AMBIGUOUS_ZONES = frozenset({"CST", "IST", "AST", "BDT", "ECT", "SST", "ADT", "PT", "ET"})

MONTHS = {
    name: i + 1
    for i, names in enumerate((
        ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"),
        ("may",), ("jun", "june"), ("jul", "july"), ("aug", "august"),
        ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
        ("dec", "december"),
    ))
    for name in names
}


@dataclass(frozen=True)
class WhenResult:
    at: datetime | None  # UTC; None when unreadable
    assumed_zone: bool  # no zone was written; read in the default zone
    unreadable: bool
    text: str  # what the CA wrote
    date_only: bool = False  # no time of day; `at` is the start of that day
    reason: str | None = None  # why it is unreadable, for the person

    def note(self, default_tz: tzinfo | None = None) -> str | None:
        """One line for the acknowledgement, or None when the value was clear."""
        if self.unreadable:
            return f"could not read this date ({self.reason})" if self.reason else (
                "could not read this date")
        parts = []
        if self.date_only:
            parts.append("no time of day given; read as the start of that day")
        if self.assumed_zone:
            zone = getattr(default_tz, "key", None) or str(default_tz or "the default zone")
            parts.append(f"no time zone given; read as {zone}")
        return "; ".join(parts) or None


_MON = r"(?P<mon>[A-Za-z]{3,9})\.?"
_DATE_PATTERNS = (
    re.compile(r"(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})(?!\d)"),
    re.compile(r"(?P<d>\d{1,2})(?:st|nd|rd|th)?[\s-]+" + _MON + r"[\s,-]+(?P<y>\d{4})"),
    re.compile(_MON + r"\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<y>\d{4})"),
    re.compile(r"(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>\d{4})"),
    re.compile(r"(?P<a>\d{1,2})(?P<sep>[/-])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{2,4})(?!\d)"),
)
_WEEKDAY = re.compile(r"(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+", re.I)
_TIME = re.compile(
    r"(?P<h>\d{1,2})(?::(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,]\d{1,9})?)?)?"
    r"(?:\s*(?P<ampm>[ap])\.?m\.?)?(?![\d:])",
    re.I,
)
_ZONE = re.compile(
    r"\(?\s*(?:"
    r"(?P<base>UTC|GMT|UT)?\s*(?P<sign>[+\-−])\s*(?P<oh>\d{1,2})(?::?(?P<om>\d{2}))?"
    r"|(?P<iana>[A-Za-z]+/[A-Za-z_]+(?:/[A-Za-z_]+)?)"
    r"|(?P<name>[A-Za-z]{1,5})(?![A-Za-z])"
    r")\s*\)?",
)
# "approximately 2026-11-25 14:05 UTC (during the nightly scan)": the words
# around an otherwise clear date do not change it.
_QUALIFIER = re.compile(r"^(?:approx(?:\.|imately)?|around|about|circa|ca\.|on|at|~)\s*", re.I)
_COMMENT = re.compile(r"\([^()]*\)")
_SEP = re.compile(r"(?:T|\s*,?\s*(?:at\s+)?|\s*,\s*)", re.I)


def _unreadable(text: str, reason: str) -> WhenResult:
    return WhenResult(None, False, True, text, reason=reason)


def _match_date(s: str) -> tuple[tuple[int, int, int] | str, int] | None:
    """(year, month, day) or a reason string, and where the date ends; None if no date."""
    for pattern in _DATE_PATTERNS:
        m = pattern.match(s)
        if not m:
            continue
        groups = m.groupdict()
        year = int(groups["y"])
        if len(groups["y"]) != 4:
            return "two-digit year", m.end()
        if groups.get("mon") is not None:
            month = MONTHS.get(groups["mon"].lower())
            if month is None:
                continue
            return (year, month, int(groups["d"])), m.end()
        if groups.get("a") is not None:
            a, b = int(groups["a"]), int(groups["b"])
            if a > 12 >= b:
                return (year, b, a), m.end()
            if b > 12 >= a or a == b:
                return (year, a, b), m.end()
            return "day and month could be read either way; please write 2026-06-05", m.end()
        return (year, int(groups["m"]), int(groups["d"])), m.end()
    return None


def _match_time(s: str) -> tuple[tuple[int, int, int], int] | None:
    m = _TIME.match(s)
    if not m or (m.group("mi") is None and m.group("ampm") is None):
        return None  # a bare number is not a time
    hour, minute = int(m.group("h")), int(m.group("mi") or 0)
    second = int(m.group("s") or 0)
    ampm = (m.group("ampm") or "").lower()
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "p" else 0)
    return (hour, minute, second), m.end()


def _match_zone(s: str) -> tuple[tzinfo | str, int] | None:
    m = _ZONE.match(s)
    if not m or m.end() == 0:
        return None
    if m.group("sign"):
        hours, minutes = int(m.group("oh")), int(m.group("om") or 0)
        if hours > 14 or minutes > 59:
            return "offset out of range", m.end()
        sign = -1 if m.group("sign") in "-−" else 1
        return timezone(sign * timedelta(hours=hours, minutes=minutes)), m.end()
    if m.group("iana"):
        try:
            return ZoneInfo(m.group("iana")), m.end()
        except (ZoneInfoNotFoundError, ValueError):
            return f"unknown time zone {m.group('iana')!r}", m.end()
    name = m.group("name").upper()
    if name in AMBIGUOUS_ZONES:
        return f"time zone {name} could mean several zones", m.end()
    if name in ZONE_ABBREVIATIONS:
        return timezone(timedelta(minutes=ZONE_ABBREVIATIONS[name])), m.end()
    return f"unknown time zone {m.group('name')!r}", m.end()


def parse_when(text: str, default_tz: tzinfo) -> WhenResult:
    """Read `text` as one instant; see the module docstring for what is accepted."""
    original = text
    s = " ".join(text.split()).strip(" .;")
    if not s:
        return _unreadable(original, "empty")
    if len(s) > MAX_DATE_TEXT:
        return _unreadable(original, "too long to be a date")
    s = _QUALIFIER.sub("", s, count=1)
    s = _WEEKDAY.sub("", s, count=1) if _WEEKDAY.match(s) else s
    time_first = None
    tm = _match_time(s)
    if tm and not _match_date(s):
        # "14:05 UTC on 25 Nov 2026": time (and zone) before the date.
        time_first, end = tm
        rest = s[end:].lstrip()
        zone_first = None
        zm = _match_zone(rest) if not rest.lower().startswith("on ") else None
        if zm:
            zone_first, zend = zm
            rest = rest[zend:].lstrip()
        rest = re.sub(r"^(?:on\s+|,\s*)", "", rest, flags=re.I)
        rest = _WEEKDAY.sub("", rest, count=1) if _WEEKDAY.match(rest) else rest
        s = rest
    dm = _match_date(s)
    if dm is None:
        return _unreadable(original, "no date found")
    date, pos = dm
    if isinstance(date, str):
        return _unreadable(original, date)
    clock = time_first
    zone: tzinfo | str | None = zone_first if time_first else None
    rest = s[pos:]
    if clock is None:
        sep = _SEP.match(rest)
        after = rest[sep.end():] if sep else rest
        tm = _match_time(after)
        if tm:
            clock, tend = tm
            rest = after[tend:]
    if zone is None:
        stripped = rest.lstrip()
        if stripped:
            zm = _match_zone(stripped)
            if zm:
                zone, zend = zm
                rest = stripped[zend:]
    leftover = rest.strip(" .;")
    if leftover and not _COMMENT.fullmatch(leftover):
        return _unreadable(original, f"unexpected text {rest.strip()!r}")
    if isinstance(zone, str):
        return _unreadable(original, zone)
    year, month, day = date
    hour, minute, second = clock or (0, 0, 0)
    try:
        local = datetime(year, month, day, hour, minute, second,
                         tzinfo=zone or default_tz)
    except ValueError as exc:
        return _unreadable(original, str(exc))
    return WhenResult(
        at=local.astimezone(UTC),
        assumed_zone=zone is None,
        unreadable=False,
        text=original,
        date_only=clock is None,
    )
