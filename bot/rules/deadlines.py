"""Deadline kinds as data: the rule each serves, who is reminded, and which CA mail satisfies it.

`bot/decide/incident/deadlines.py` and `bot/decide/incident/reminders.py` read this table and
nothing else to know what a deadline kind means. Rule ids are those of
`program-rules.md`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

# Who a deadline's reminders go to.
AUDIENCE_CA = "ca"  # the CA is reminded in the thread; the first overdue escalates to staff
AUDIENCE_STAFF = "staff"  # only staff are told, once, when it ends (the notice period)

# P1/M1: a notice's action may not come sooner than this after the notice,
# unless the incident is marked exceptional.
NOTICE_PERIOD = timedelta(days=7)


@dataclass(frozen=True)
class DeadlineKind:
    kind: str  # the contract's deadline kind
    rule: str
    label: str  # how mails name it ("the certificate list")
    audience: str
    # Inbound kinds (classify.py) of a CA mail in the thread that satisfy it.
    satisfied_by: tuple[str, ...]
    # Satisfied only when what arrived is complete (the final report, R4).
    needs_complete: bool = False
    # After it is satisfied, the next one is due one interval after the mail (R3).
    repeats: bool = False
    # Words in the subject or an attachment name that make an ordinary update fit it.
    hints: tuple[str, ...] = ()


DEADLINE_KINDS: tuple[DeadlineKind, ...] = (
    DeadlineKind("certificate-list", "R2", "the list of mis-issued certificates", AUDIENCE_CA,
                 ("certificate-list",)),
    DeadlineKind("periodic-report", "R3", "the periodic report", AUDIENCE_CA,
                 ("update", "certificate-list", "final-report"), repeats=True),
    DeadlineKind("update", "R3", "the daily update", AUDIENCE_CA,
                 ("update", "certificate-list", "final-report"), repeats=True),
    DeadlineKind("final-report", "R4", "the final incident report", AUDIENCE_CA,
                 ("final-report",), needs_complete=True),
    # No classifier kind exists for it: an update that names it in the subject
    # or an attachment satisfies it.
    DeadlineKind("investigative-report", "R5", "the investigative and technical report",
                 AUDIENCE_CA, ("update", "final-report"), hints=("investigat",)),
    DeadlineKind("info", "R1a", "the information requested", AUDIENCE_CA,
                 ("update", "certificate-list", "final-report")),
    DeadlineKind("notice-period", "P1", "the notice period", AUDIENCE_STAFF, ()),
    # 2026-02: satisfied by a bug link in any CA mail of the thread
    # (bot/decide/handlers/disclosure.py), whatever its kind.
    DeadlineKind("public-disclosure", "2026-02 disclosure",
                 "the link to the public disclosure of the incident on Bugzilla",
                 AUDIENCE_CA, ()),
)
DEADLINE_KINDS_BY_NAME: dict[str, DeadlineKind] = {k.kind: k for k in DEADLINE_KINDS}

# What `/request X` creates (the command's `what` → deadline kind).
REQUEST_KINDS: dict[str, str] = {
    "certificate-list": "certificate-list",
    "reports": "periodic-report",
    "final-report": "final-report",
    "investigative-report": "investigative-report",
    "info": "info",
}
