"""The staff command grammar as data: one row per command form of DESIGN.md.

`bot/parse/commands.py` reads a line against these rows; nothing about a
command's shape lives anywhere else. A row's `pattern` is matched (full match,
case-insensitive) against the text after `/name`; its named groups are the
arguments: `due` (DATE), `every` (DURATION), `target` (ROOT), `text` (free
text) and `what` (when the row itself leaves `what` open, as `/exceptional`).
Rule ids are those of `program-rules.md`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A DATE is one token; whether it is a real date is parse_due's business, so
# the error can name the bad text instead of a generic "malformed".
# `"` is excluded so that a quoted ROOT name ending in `on X"` stays one name.
_DATE = r'[^\s"]+'
_DUE = rf"\s+due\s+(?P<due>{_DATE})"
# DURATION may be written `7d` or `7 days`, so it takes the rest of the line.
_EVERY = r"\s+every\s+(?P<every>\S.*?)"

# Commands that keep the books rather than exercise a program right.
ADMIN = "admin"


@dataclass(frozen=True)
class CommandSpec:
    name: str  # the word after "/", lower case
    what: str | None  # fixed sub-command ("certificate-list"), None when none or free
    pattern: str  # regex for everything after "/name", see the module docstring
    usage: str  # the valid form, shown in error replies
    rule: str  # the rule the command serves
    needs_incident: bool  # must be sent in an incident's thread
    compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", re.compile(self.pattern, re.IGNORECASE))


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("request", "certificate-list", rf"\s+certificate-list(?:{_DUE})?",
                "/request certificate-list [due DATE]", "R2", True),
    CommandSpec("request", "reports", rf"\s+reports{_EVERY}",
                "/request reports every DURATION", "R3", True),
    CommandSpec("request", "final-report", rf"\s+final-report{_DUE}",
                "/request final-report due DATE", "P4", True),
    CommandSpec("request", "investigative-report", rf"\s+investigative-report(?:{_DUE})?",
                "/request investigative-report [due DATE]", "R5", True),
    CommandSpec("request", "info", rf"\s+info(?:{_DUE})?\s*:\s*(?P<text>\S.*)",
                "/request info [due DATE]: free text", "R1a", True),
    # ROOT may be a subject CN with spaces; the lazy group leaves "on DATE" to the end.
    CommandSpec("notice", "revoke-root",
                rf'\s+revoke-root\s+(?P<target>\S.*?)(?:\s+on\s+(?P<due>{_DATE}))?',
                "/notice revoke-root ROOT [on DATE]", "P1", True),
    CommandSpec("exceptional", None, r"\s+(?P<what>on|off)",
                "/exceptional on|off", "P1", True),
    CommandSpec("require", "third-party-investigator", r"\s+third-party-investigator",
                "/require third-party-investigator", "P6", True),
    CommandSpec("disqualify-audit", None, r"", "/disqualify-audit", "P7", True),
    CommandSpec("accept", "final-report", r"\s+final-report",
                "/accept final-report", "R4", True),
    CommandSpec("note", None, r"\s+(?P<text>\S.*)", "/note free text", "P2", True),
    # R3/R4 (2026-02): "until the incident is remediated", "once it has been resolved".
    CommandSpec("resolved", None, r"", "/resolved", "R4", True),
    CommandSpec("close", None, r"", "/close", ADMIN, True),
    CommandSpec("reopen", None, r"", "/reopen", ADMIN, True),
    # Sent in the thread of the incident to keep; the named one is moved into it.
    CommandSpec("merge", None, r"\s+(?P<target>\S+)", "/merge INC-YYYY-NNNN", ADMIN, True),
    CommandSpec("status", None, r"", "/status", ADMIN, False),
)

COMMAND_NAMES: tuple[str, ...] = tuple(dict.fromkeys(c.name for c in COMMANDS))


def specs_named(name: str) -> tuple[CommandSpec, ...]:
    """The rows for `/name` (lower case), in table order; empty when unknown."""
    return tuple(c for c in COMMANDS if c.name == name)


def usage_lines(name: str | None = None) -> tuple[str, ...]:
    """The valid forms of `/name`, or of every command when `name` is unknown or None."""
    rows = specs_named(name) if name else ()
    return tuple(c.usage for c in (rows or COMMANDS))
