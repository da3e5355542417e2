"""Staff command lines in a reply body to typed `Command`s or `CommandProblem`s.

The grammar is the table in `bot/rules/commands.py`; this module finds the
command lines above the quoted part of a reply, matches each against that
table and reads its DATE and DURATION arguments. It never raises on a body:
every line that looks like a command becomes either a `Command` or a
`CommandProblem` that names what is wrong and lists the valid forms. Whether a
date is in the past, or a ROOT is known, needs the clock and the config, so
the caller decides that.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.errors import CommandError
from bot.rules.commands import COMMAND_NAMES, CommandSpec, specs_named, usage_lines

# A reply carrying more commands than this is a script gone wrong or hostile;
# real staff replies carry one to five.
MAX_COMMANDS_PER_MAIL = 50
# One command is one line; a note longer than this belongs in the mail body,
# which is kept anyway, and bounding it keeps error replies short.
MAX_COMMAND_LINE = 2_000
# Lines scanned for commands: commands sit above the quote, at the top.
MAX_SCANNED_LINES = 5_000
# Report intervals: under an hour the reminders would flood the CA's inbox
# (the scheduler reminds per interval); over a year is no "periodic report".
MIN_REPORT_INTERVAL = timedelta(hours=1)
MAX_REPORT_INTERVAL = timedelta(days=366)
# Longer DATE or DURATION text is not a date or duration; bounding it keeps
# the regexes and error messages small.
MAX_ARGUMENT_TEXT = 64


@dataclass(frozen=True)
class Command:
    name: str  # "request", "notice", "exceptional", "require", "disqualify-audit", …
    what: str | None  # "certificate-list", "reports", "revoke-root", "on"/"off" …
    due: datetime | None  # UTC; for /notice the "on DATE" (the action date)
    every: timedelta | None
    target: str | None  # ROOT as written, for /notice
    text: str | None  # free text (/note, /request info)
    line: str  # the line as written
    rule: str  # "R2", "P1" … (bot.rules.commands.ADMIN for /close, /reopen, /status)
    needs_incident: bool = True


@dataclass(frozen=True)
class CommandProblem:
    line: str
    error: str
    usage: tuple[str, ...]  # the valid forms


# ---------------------------------------------------------------- finding lines

# A command line starts with "/word" (letters and hyphens) followed by a space,
# a colon or the end: "/usr/bin/x", "/24" or "/s/ Alice" are prose.
_COMMAND_START = re.compile(r"[ \t]*/([A-Za-z][A-Za-z-]*)(?=[\s:]|$)")

# Where the quoted part of a reply begins; everything from here down is theirs.
_QUOTE_STARTS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\s*>"),  # "> quoted" and a bare ">"
    re.compile(r"\s*-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine)"
               r"\s*-{2,}\s*$", re.I),
    re.compile(r"\s*-{2,}\s*forwarded message\s*-{2,}\s*$", re.I),
    re.compile(r"\s*_{10,}\s*$"),  # Outlook's rule above its header block
    re.compile(r"\s*--\s*$"),  # signature delimiter "-- " (trailing space often lost)
)
# Reply attributions; they may wrap, so the end is looked for on the next lines too.
_ATTRIBUTION_START = re.compile(r"\s*(?:on|am|le|el|il|op)\s\S", re.I)
_ATTRIBUTION_END = re.compile(
    r"(?:wrote|schrieb|a écrit|escribió|ha scritto|schreef)\s*:\s*$", re.I
)
ATTRIBUTION_MAX_LINES = 3  # clients wrap a long "On … wrote:" over two or three lines
# Outlook quotes with a header block instead of ">": From:, then Sent:/Date: within a few lines.
_HEADER_FROM = re.compile(r"\s*\**(?:from|von|de)\s*:\**\s", re.I)
_HEADER_SENT = re.compile(r"\s*\**(?:sent|date|gesendet|datum|envoyé)\s*:\**\s", re.I)
HEADER_BLOCK_LINES = 4


def _quote_starts_at(lines: list[str], i: int) -> bool:
    line = lines[i]
    if any(p.match(line) for p in _QUOTE_STARTS):
        return True
    if _ATTRIBUTION_START.match(line):
        tail = lines[i : i + ATTRIBUTION_MAX_LINES]
        if any(_ATTRIBUTION_END.search(t) for t in tail):
            return True
    if _HEADER_FROM.match(line):
        return any(_HEADER_SENT.match(t) for t in lines[i + 1 : i + 1 + HEADER_BLOCK_LINES])
    return False


def _command_lines(body: str, limit: int) -> list[str]:
    lines = body.splitlines()[:MAX_SCANNED_LINES]
    found: list[str] = []
    for i, line in enumerate(lines):
        if _COMMAND_START.match(line):
            found.append(line.strip())
            if len(found) >= limit:
                break
        elif _quote_starts_at(lines, i):
            break
    return found


def extract_command_lines(body: str) -> list[str]:
    """The command lines above the quote in `body`, stripped; at most MAX_COMMANDS_PER_MAIL."""
    return _command_lines(body, MAX_COMMANDS_PER_MAIL)


# ---------------------------------------------------------------- arguments

_DATE_ONLY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,6})?)?"
                       r"(?:Z|[+-]\d{2}:?\d{2})?", re.I)
_DATE_HELP = "use YYYY-MM-DD or an ISO 8601 time"


def parse_due(text: str, tz: ZoneInfo) -> datetime:
    """DATE (end of that day, 23:59:59 in `tz`) or an ISO 8601 time, as UTC; raises CommandError.

    A time without an offset is a wall time in `tz`; in the autumn hour that
    occurs twice the first one is meant (fold 0), as zoneinfo reads it.
    """
    shown = text[:MAX_ARGUMENT_TEXT]
    bad = CommandError(f"'{shown}' is not a date ({_DATE_HELP})")
    text = text.strip()
    try:
        if m := _DATE_ONLY.fullmatch(text):
            day = date(int(m[1]), int(m[2]), int(m[3]))
            local = datetime.combine(day, time(23, 59, 59), tzinfo=tz)
        elif _DATETIME.fullmatch(text):
            local = datetime.fromisoformat(text.upper().replace(",", "."))
            if local.tzinfo is None:
                local = local.replace(tzinfo=tz)
        else:
            raise bad
        return local.astimezone(UTC)
    except (ValueError, OverflowError):
        # ValueError: month 13; OverflowError: year 1 or 9999 shifted past the range.
        raise bad from None


_DURATION_PART = re.compile(
    r"\s*(\d{1,6})\s*(weeks?|wks?|w|days?|d|hours?|hrs?|h)(?![a-z])\s*(?:,|and)?", re.I
)
_UNIT_HOURS = {"w": 7 * 24, "d": 24, "h": 1}
_DURATION_HELP = "use a number and w, d or h, e.g. 7d, 48h, 2w, 1d12h"


def parse_duration(text: str) -> timedelta:
    """DURATION such as `7d`, `48h`, `2w`, `1d12h` or `7 days`; raises CommandError.

    Minutes and months are refused on purpose: `m` is ambiguous between them.
    """
    shown = text[:MAX_ARGUMENT_TEXT]
    stripped = text.strip()
    pos, hours, seen = 0, 0, set()
    while pos < len(stripped) and len(stripped) <= MAX_ARGUMENT_TEXT:
        m = _DURATION_PART.match(stripped, pos)
        if not m or m.end() == pos:
            break
        unit = m[2][0].lower()
        if unit in seen:
            raise CommandError(f"'{shown}' gives the {m[2]} twice ({_DURATION_HELP})")
        seen.add(unit)
        hours += int(m[1]) * _UNIT_HOURS[unit]
        pos = m.end()
    if not seen or pos != len(stripped):
        raise CommandError(f"'{shown}' is not a duration ({_DURATION_HELP})")
    every = timedelta(hours=hours)  # at most 3 units of 6 digits: far inside timedelta's range
    if every <= timedelta(0):
        raise CommandError(f"'{shown}': the interval must be positive")
    if every < MIN_REPORT_INTERVAL:
        raise CommandError(f"'{shown}': the interval must be at least {MIN_REPORT_INTERVAL}")
    if every > MAX_REPORT_INTERVAL:
        raise CommandError(
            f"'{shown}': the interval must be at most {MAX_REPORT_INTERVAL.days} days"
        )
    return every


# ---------------------------------------------------------------- one line


def _suggest(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _build(spec: CommandSpec, m: re.Match[str], line: str, tz: ZoneInfo) -> Command:
    groups = m.groupdict()
    due = parse_due(groups["due"], tz) if groups.get("due") else None
    every = parse_duration(groups["every"]) if groups.get("every") else None
    target = groups.get("target")
    if target and len(target) >= 2 and target[0] == target[-1] == '"':
        target = target[1:-1].strip()  # quotes let a CN end in "on something"
    what = (groups.get("what") or "").lower() or spec.what
    text = groups.get("text")
    return Command(
        name=spec.name, what=what, due=due, every=every, target=target or None,
        text=text.strip() if text else None, line=line, rule=spec.rule,
        needs_incident=spec.needs_incident,
    )


def parse_command_line(line: str, tz: ZoneInfo) -> Command | CommandProblem:
    """One command line (starting with "/") to a Command, or the problem with it."""
    line = line.strip()
    if len(line) > MAX_COMMAND_LINE:
        return CommandProblem(line[:MAX_COMMAND_LINE] + "…",
                              f"command line longer than {MAX_COMMAND_LINE} characters",
                              usage_lines())
    head = _COMMAND_START.match(line)
    if not head:
        return CommandProblem(line, "not a command (a command starts with /word)", usage_lines())
    word = head[1]
    name = word.lower()
    specs = specs_named(name)
    if not specs:
        slashed = tuple(f"/{n}" for n in COMMAND_NAMES)
        hint = _suggest(f"/{name}", slashed)
        return CommandProblem(line, f"unknown command /{word}{hint}", usage_lines())
    rest = line[head.end():].rstrip()
    usage = usage_lines(name)
    for spec in specs:
        m = spec.compiled.fullmatch(rest)
        if m:
            try:
                return _build(spec, m, line, tz)
            except CommandError as e:
                return CommandProblem(line, str(e), (spec.usage,))
    return CommandProblem(line, _malformed(name, rest, specs), usage)


def _malformed(name: str, rest: str, specs: tuple[CommandSpec, ...]) -> str:
    whats = tuple(s.what for s in specs if s.what)
    first = rest.split()[0].lower() if rest.split() else ""
    if len(whats) > 1 and first not in whats:
        if not first:
            return f"/{name} needs one of: {', '.join(whats)}"
        return f"unknown /{name} {first}{_suggest(first, whats)}"
    spec = next((s for s in specs if s.what == first), specs[0])
    if not spec.pattern:
        return f"/{name} takes nothing after it"
    return f"malformed /{name}: expected {spec.usage}"


def parse_commands(body: str, tz: ZoneInfo) -> list[Command | CommandProblem]:
    """Every command line above the quoted part of `body`, parsed, in order."""
    lines = _command_lines(body, MAX_COMMANDS_PER_MAIL + 1)
    out: list[Command | CommandProblem] = [parse_command_line(ln, tz) for ln in
                                           lines[:MAX_COMMANDS_PER_MAIL]]
    if len(lines) > MAX_COMMANDS_PER_MAIL:
        out.append(CommandProblem(
            lines[MAX_COMMANDS_PER_MAIL],
            f"more than {MAX_COMMANDS_PER_MAIL} commands in one mail; the rest were not read",
            usage_lines(),
        ))
    return out
