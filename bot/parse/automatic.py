"""Decide whether an incoming mail was written by a machine, so that rootnotify never answers it.

DESIGN.md, "No mail loops, no backscatter": never answer bounces, auto-replies,
mailing lists, other robots or our own mail. The rules are the table `RULES`
below, read top to bottom; the first rule that matches gives the verdict, so
the order is the precedence of the verdict's `kind` (a bounce that also says
`Auto-Submitted: auto-replied` is a bounce, not a vacation reply).

Every rule here only ever *suppresses* an answer. A false positive costs one
missing acknowledgement (the mail itself is still stored and processed); a
false negative can start a mail loop. Where a signal is ambiguous the table
leans towards silence and says so.

Pure: no I/O, no clock. `judge` never raises for anything a sender controls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from bot.parse.automaticchecks import (
    LOOP_HEADER,
    AllOf,
    AnyOf,
    BodyOpensWith,
    HeaderListHas,
    HeaderMatches,
    HeaderPresent,
    HeaderValue,
    LoopMarker,
    NullReturnPath,
    Report,
    SubjectMatches,
    SystemSender,
    Test,
    TopLevelType,
    _View,
    _view,
)
from bot.parse.mail.message import ParsedMessage

# Callers import the loop header from here, as before the checks had their own module.
__all__ = ["LOOP_HEADER", "RULES", "AutomaticVerdict", "Kind", "is_bounce", "judge", "rules_table"]

Kind = Literal["bounce", "auto-reply", "list", "loop", "system-sender"]


@dataclass(frozen=True)
class AutomaticVerdict:
    """What `judge` decided. `kind is None`: a person wrote it; answering is allowed."""

    kind: Kind | None
    rule: str | None
    reason: str | None

    @property
    def automatic(self) -> bool:
        return self.kind is not None


PERSON = AutomaticVerdict(kind=None, rule=None, reason=None)


# --------------------------------------------------------------------------
# What one message looks like to the rules
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# Tests a rule can make. Each returns the evidence it saw, or None.
# --------------------------------------------------------------------------


# Subjects MTAs give their non-delivery reports (Exchange localises its own).
BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliverable|undelivered mail|mail delivery failed|delivery status notification"
    r"|returned mail|failure notice|delivery failure|delivery notification: delivery has failed"
    r"|warning: could not send message|delayed mail|message delayed|mail system error"
    r"|message not delivered|unzustellbar|non remis|onbestelbaar|non recapitabile)",
    re.I,
)
# RFC 3834 3.1.5 suggests "Auto:"; the rest are what Exchange, Apple, AOL, wp.pl
# and others write. Matched anywhere: AOL appends "(Automatic Response)".
VACATION_SUBJECT = re.compile(
    r"^\s*auto:|auto[- ]?reply|automatic (?:reply|response)|auto[- ]?respon|out of (?:the )?office"
    r"|abwesenheitsnotiz|automatische antwort|r[ée]ponse automatique|respuesta autom[áa]tica"
    r"|risposta automatica|automatyczna odpowied",
    re.I,
)
VACATION_BODY = re.compile(
    r"out of (?:the )?office|\bI(?:'m| am) (?:currently )?(?:away|out"
    r"|on (?:vacation|holiday|leave))|limited access to (?:my )?e-?mail"
    r"|(?:mailbox|inbox|address) is (?:no longer|not) (?:in use|monitored)"
    r"|will (?:be back|return) on|until I return",
    re.I,
)


@dataclass(frozen=True)
class Rule:
    id: str
    kind: Kind
    test: Test
    why: str
    ref: str


def _tokens(*values: str) -> frozenset[str]:
    return frozenset(values)


# fmt: off
RULES: tuple[Rule, ...] = (
    # --- our own mail, or another rootnotify's -------------------------------------------
    Rule("own-loop-marker", "loop", LoopMarker(own=True),
         "our own mail came back (a forward or alias pointing at us)", "rootnotify loop marker"),
    Rule("other-loop-marker", "loop", LoopMarker(own=False),
         "another rootnotify deployment sent it; two robots answering each other never stop",
         "rootnotify loop marker; RT's loop check misses this case"),
    # --- bounces: before the auto-reply rules, since many DSNs also say Auto-Submitted -------
    Rule("dsn-report", "bounce", Report(_tokens("delivery-status", "global-delivery-status")),
         "a delivery status notification", "RFC 3464, RFC 6522"),
    Rule("dsn-bare", "bounce", TopLevelType("message/delivery-status"),
         "a delivery status notification without its multipart/report wrapper", "RFC 3464"),
    Rule("failed-recipients", "bounce", HeaderPresent(("X-Failed-Recipients",)),
         "Exim and Gmail name the failed addresses of a bounce here", "Exim spec ch. 49"),
    Rule("exchange-ndr", "bounce", HeaderPresent(("X-MS-Exchange-Message-Is-Ndr",)),
         "Exchange Online marks its non-delivery reports", "Exchange Online"),
    Rule("bounce-subject", "bounce",
         AllOf((SubjectMatches(BOUNCE_SUBJECT),
                AnyOf((SystemSender(), NullReturnPath(),
                       HeaderValue("Auto-Submitted", not_in=_tokens("no")))))),
         "text bounces (qmail, old Exchange, sendmail) have no structure but a telltale subject;"
         " a subject alone is not enough, a person may quote one", "RFC 3464 1.1"),
    # --- auto-replies -------------------------------------------------------------------
    Rule("mdn", "auto-reply", Report(_tokens("disposition-notification")),
         "a read receipt (MDN)", "RFC 8098"),
    Rule("auto-submitted", "auto-reply", HeaderValue("Auto-Submitted", not_in=_tokens("no")),
         "any value but `no` (auto-replied, auto-generated, auto-notified, junk) is a robot",
         "RFC 3834 5"),
    Rule("x-autoreply", "auto-reply",
         HeaderPresent(("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Autoreply-From",
                        "X-Mail-Autoreply", "X-Autogenerated")),
         "de-facto autoresponder markers (procmail, cPanel, Yahoo, vacation programs)", "de facto"),
    Rule("auto-response-suppress", "auto-reply",
         HeaderListHas("X-Auto-Response-Suppress", _tokens("all", "autoreply", "oof")),
         "the sender asks for no automatic replies; our acknowledgement is one. DR/NDR/RN/NRN"
         " only concern delivery and read reports, which we never send",
         "MS-OXCMAIL 2.1.3.2.20"),
    Rule("exchange-inbox-rule", "auto-reply",
         HeaderPresent(("X-MS-Exchange-Inbox-Rules-Loop",
                        "X-MS-Exchange-Generated-Message-Source")),
         "an Exchange inbox rule, OOF or transport/journal agent generated it", "Exchange"),
    Rule("apple-vacation", "auto-reply",
         HeaderMatches("X-Apple-Action", re.compile("vacation", re.I)),
         "iCloud's vacation responder sets no standard header, only this", "iCloud"),
    Rule("rt-loop", "auto-reply", HeaderPresent(("RT-Loop-Prevention",)),
         "a ticket system (RT) sent it. Generic X-Loop is not used: procmail and sieve forwards"
         " on our own side may add it to every mail", "Request Tracker"),
    Rule("precedence-bulk", "auto-reply",
         HeaderValue("Precedence", any_of=_tokens("bulk", "junk", "auto_reply")),
         "responders and bulk senders mark themselves so", "RFC 3834 2; RFC 2076"),
    Rule("vacation-text", "auto-reply",
         AllOf((SubjectMatches(VACATION_SUBJECT), BodyOpensWith(VACATION_BODY))),
         "weak signals, so both are needed: a person may write either one alone", "RFC 3834 3.1.5"),
    # --- mailing lists ------------------------------------------------------------------
    Rule("list-headers", "list",
         HeaderPresent(("List-Id", "List-Post", "List-Unsubscribe", "List-Help", "List-Subscribe",
                        "List-Owner", "List-Archive", "Mailing-List", "X-Mailing-List")),
         "answering a list answers every subscriber", "RFC 2369, RFC 2919"),
    Rule("precedence-list", "list", HeaderValue("Precedence", any_of=_tokens("list")),
         "list servers mark their mail so", "RFC 2076"),
    # --- robots by address, other reports, and the null sender --------------------------------
    Rule("system-sender", "system-sender", SystemSender(),
         "nobody reads these mailboxes; mail to them bounces or loops", "RFC 5321 4.5.1; RFC 2142"),
    Rule("other-report", "system-sender", Report(None),
         "any other machine report (abuse feedback, TLS report)", "RFC 6522, RFC 5965"),
    Rule("null-return-path", "bounce", NullReturnPath(),
         "a null sender must never be answered: it is a bounce or another notification",
         "RFC 5321 4.5.5, RFC 3834 2"),
)
# fmt: on

# is_bounce sees no envelope, and a null sender alone does not make a delivery report.
_BOUNCE_RULES = tuple(r for r in RULES if r.kind == "bounce" and r.id != "null-return-path")


def _first_match(rules: tuple[Rule, ...], view: _View) -> AutomaticVerdict:
    for rule in rules:
        evidence = rule.test(view)
        if evidence is not None:
            return AutomaticVerdict(kind=rule.kind, rule=rule.id, reason=f"{evidence} ({rule.ref})")
    return PERSON


def judge(
    message: ParsedMessage, envelope_from: str | None, *, loop_marker: str
) -> AutomaticVerdict:
    """Whether `message` was written by a machine; `kind is None` means a person wrote it.

    `envelope_from` is the SMTP MAIL FROM ("" or "<>" for the null sender), or
    None when it is not known (files, IMAP): then the delivery headers
    (Return-Path) stand in for it. `loop_marker` is this deployment's marker,
    the value of `LOOP_HEADER` on every mail we send.
    """
    if not loop_marker or not loop_marker.strip():
        # A programming error, not input: with no marker our own mail would pass.
        raise ValueError("loop_marker must be a non-empty string")
    return _first_match(RULES, _view(message, envelope_from, loop_marker.strip()))


def is_bounce(message: ParsedMessage) -> bool:
    """Whether `message` is a delivery report (by its structure or headers, not its envelope)."""
    return _first_match(_BOUNCE_RULES, _view(message, None, None)).kind == "bounce"


def rules_table() -> str:
    """The rules as a plain-text table, for `check-config`, docs and reviewers."""
    lines = [f"{'rule':<24} {'kind':<13} matches — why [reference]"]
    for rule in RULES:
        lines.append(f"{rule.id:<24} {rule.kind:<13} {rule.test} — {rule.why} [{rule.ref}]")
    return "\n".join(lines)
