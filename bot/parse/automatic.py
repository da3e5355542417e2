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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bot.parse.mail.message import ParsedMessage, parse_addresses

Kind = Literal["bounce", "auto-reply", "list", "loop", "system-sender"]

LOOP_HEADER = "X-Rootnotify-Loop"
"""Header on every mail we send, valued with the deployment's marker (the outbox writes it)."""

# Header values are sender-controlled; matching looks at this many characters
# of each. Real values of the headers below are a few dozen characters; a
# longer one would only make the regular expressions slower.
MAX_VALUE_CHARS = 1_000
# The vacation-phrase test reads only the opening of the body: responders put
# their message first, and scanning a whole body for "I am away" finds it in
# quoted replies written by people.
MAX_BODY_HEAD_CHARS = 500
# Evidence quoted in a verdict's reason is cut to this length: the reason is
# shown to staff and written to logs, and the value came from a stranger.
MAX_EVIDENCE_CHARS = 80


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


@dataclass(frozen=True)
class _View:
    headers: dict[str, list[str]]  # lower-cased name -> cleaned values, in order
    envelope_from: str | None  # None: the caller does not know the envelope
    subject: str
    body_head: str
    from_address: str | None
    loop_marker: str | None  # None when only the bounce rules are asked (is_bounce)

    def values(self, name: str) -> list[str]:
        return self.headers.get(name.lower(), [])


def _clean(value: str) -> str:
    # Unfolded already by the parser; control characters would only end up in logs.
    return re.sub(r"[\x00-\x1f\x7f]+", " ", value[:MAX_VALUE_CHARS]).strip()


def _view(message: ParsedMessage, envelope_from: str | None, loop_marker: str | None) -> _View:
    headers: dict[str, list[str]] = {}
    for name, value in message.headers:
        headers.setdefault(str(name).strip().lower(), []).append(_clean(str(value)))
    return _View(
        headers=headers,
        envelope_from=envelope_from,
        subject=_clean(message.subject or ""),
        body_head=(message.text_plain or "")[:MAX_BODY_HEAD_CHARS],
        from_address=message.from_address,
        loop_marker=loop_marker,
    )


def _evidence(name: str, value: str) -> str:
    shown = value if len(value) <= MAX_EVIDENCE_CHARS else value[: MAX_EVIDENCE_CHARS - 1] + "…"
    return f"{name}: {shown}" if shown else f"{name}: (empty)"


def _strip_comments(value: str) -> str:
    # RFC 5322 comments, e.g. sendmail's "auto-generated (failure)"; nested ones
    # are peeled from the inside, a bounded number of times.
    for _ in range(8):
        stripped = re.sub(r"\([^()]*\)", " ", value)
        if stripped == value:
            break
        value = stripped
    return value.strip()


def _first_token(value: str) -> str:
    """`auto-replied; owner-email=x@y (c)` -> `auto-replied`."""
    return re.split(r"[;,\s]", _strip_comments(value), maxsplit=1)[0].strip().lower()


# --------------------------------------------------------------------------
# Tests a rule can make. Each returns the evidence it saw, or None.
# --------------------------------------------------------------------------

Test = Callable[[_View], str | None]


@dataclass(frozen=True)
class HeaderPresent:
    names: tuple[str, ...]

    def __call__(self, v: _View) -> str | None:
        for name in self.names:
            for value in v.values(name):
                return _evidence(name, value)
        return None

    def __str__(self) -> str:
        return " or ".join(self.names) + " present"


@dataclass(frozen=True)
class HeaderValue:
    """The header's first token (comments, parameters dropped) is in `any_of` / not in `not_in`."""

    name: str
    any_of: frozenset[str] = frozenset()
    not_in: frozenset[str] = frozenset()

    def __call__(self, v: _View) -> str | None:
        for value in v.values(self.name):
            token = _first_token(value)
            if (self.any_of and token in self.any_of) or (self.not_in and token not in self.not_in):
                return _evidence(self.name, value)
        return None

    def __str__(self) -> str:
        if self.any_of:
            return f"{self.name}: {'|'.join(sorted(self.any_of))}"
        return f"{self.name} other than {'|'.join(sorted(self.not_in))}"


@dataclass(frozen=True)
class HeaderListHas:
    """A comma-separated header value names any of `items` (case-insensitive)."""

    name: str
    items: frozenset[str]

    def __call__(self, v: _View) -> str | None:
        for value in v.values(self.name):
            listed = {item.strip().lower() for item in re.split(r"[,;\s]+", value)}
            if listed & self.items:
                return _evidence(self.name, value)
        return None

    def __str__(self) -> str:
        return f"{self.name} lists {'|'.join(sorted(self.items))}"


@dataclass(frozen=True)
class HeaderMatches:
    name: str
    pattern: re.Pattern[str]

    def __call__(self, v: _View) -> str | None:
        for value in v.values(self.name):
            if self.pattern.search(value):
                return _evidence(self.name, value)
        return None

    def __str__(self) -> str:
        return f"{self.name} ~ /{self.pattern.pattern}/"


def _content_type(v: _View) -> tuple[str, str | None]:
    values = v.values("Content-Type")
    if not values:
        return "text/plain", None
    value = values[0]
    main = value.split(";", 1)[0].strip().lower()
    found = re.search(r"report-type\s*=\s*\"?([A-Za-z0-9._-]+)", value, re.I)
    return main, (found.group(1).lower() if found else None)


@dataclass(frozen=True)
class Report:
    """Top-level `multipart/report` whose report-type is in `types` (None: any other type)."""

    types: frozenset[str] | None

    def __call__(self, v: _View) -> str | None:
        main, report_type = _content_type(v)
        if main != "multipart/report":
            return None
        if self.types is None or (report_type or "") in self.types:
            return f"Content-Type: multipart/report; report-type={report_type or '(none)'}"
        return None

    def __str__(self) -> str:
        kinds = "any other" if self.types is None else "|".join(sorted(self.types))
        return f"Content-Type: multipart/report; report-type={kinds}"


@dataclass(frozen=True)
class TopLevelType:
    content_type: str

    def __call__(self, v: _View) -> str | None:
        main, _ = _content_type(v)
        return f"Content-Type: {main}" if main == self.content_type else None

    def __str__(self) -> str:
        return f"Content-Type: {self.content_type} (the whole mail)"


@dataclass(frozen=True)
class LoopMarker:
    """Our `LOOP_HEADER`: with our own marker (`own`), or with another deployment's."""

    own: bool

    def __call__(self, v: _View) -> str | None:
        if v.loop_marker is None:
            return None
        for value in v.values(LOOP_HEADER):
            if (value.strip() == v.loop_marker) == self.own:
                return _evidence(LOOP_HEADER, "our marker" if self.own else value)
        return None

    def __str__(self) -> str:
        return f"{LOOP_HEADER}: {'our marker' if self.own else 'another marker'}"


def _null_path(value: str) -> bool:
    # "<>", "", and IIS's "<<>>" all mean the null reverse-path.
    return re.sub(r"[<>\s]", "", _strip_comments(value)) == ""


@dataclass(frozen=True)
class NullReturnPath:
    """The envelope sender is null: from the SMTP envelope, else from the delivery headers."""

    def __call__(self, v: _View) -> str | None:
        if v.envelope_from is not None:
            return "MAIL FROM:<>" if _null_path(v.envelope_from) else None
        # The envelope is gone (file, IMAP): the final MTA recorded it here.
        for name in ("Return-Path", "X-Envelope-From", "Envelope-From"):
            values = v.values(name)
            if values:
                return _evidence(name, values[0]) if _null_path(values[0]) else None
        return None

    def __str__(self) -> str:
        return "envelope sender <> (or Return-Path: <>)"


# Local parts that only robots use. "bounce*" covers VERP return paths
# (bounce-md_…@mandrill…, bounces+…@sendgrid…).
SYSTEM_LOCAL_PART = re.compile(
    r"^(?:mailer-?daemon|mail-daemon|postmaster|no[-_.]?reply(?:[-_.+].*)?|do[-_.]?not[-_.]?reply"
    r"|bounce.*|.+-bounces(?:\+.*)?|owner-.+|.+-owner|.+-request|listserv|majordomo)$",
    re.I,
)


@dataclass(frozen=True)
class SystemSender:
    """From, Sender or the envelope sender has a robot's local part."""

    def __call__(self, v: _View) -> str | None:
        candidates: list[tuple[str, str]] = []
        if v.from_address:
            candidates.append(("From", v.from_address))
        for value in v.values("Sender")[:1]:
            candidates.extend(("Sender", a) for a in parse_addresses(value)[:1])
        envelope = v.envelope_from
        if envelope is None:
            envelope = (v.values("Return-Path") or [None])[0]
        if envelope:
            candidates.extend(("envelope sender", a) for a in parse_addresses(envelope)[:1])
        for where, address in candidates:
            local = address.rsplit("@", 1)[0]
            if SYSTEM_LOCAL_PART.match(local):
                return _evidence(where, address)
        return None

    def __str__(self) -> str:
        return "From/Sender/envelope local part is mailer-daemon, postmaster, noreply…, bounce*…"


@dataclass(frozen=True)
class SubjectMatches:
    pattern: re.Pattern[str]

    def __call__(self, v: _View) -> str | None:
        return _evidence("Subject", v.subject) if self.pattern.search(v.subject) else None

    def __str__(self) -> str:
        return f"Subject ~ /{self.pattern.pattern[:40]}…/"


@dataclass(frozen=True)
class BodyOpensWith:
    pattern: re.Pattern[str]

    def __call__(self, v: _View) -> str | None:
        found = self.pattern.search(v.body_head)
        return _evidence("body", found.group(0)) if found else None

    def __str__(self) -> str:
        return "body opening ~ vacation phrase"


@dataclass(frozen=True)
class AllOf:
    tests: tuple[Test, ...]

    def __call__(self, v: _View) -> str | None:
        seen = []
        for test in self.tests:
            evidence = test(v)
            if evidence is None:
                return None
            seen.append(evidence)
        return " + ".join(seen)

    def __str__(self) -> str:
        return " AND ".join(f"({t})" for t in self.tests)


@dataclass(frozen=True)
class AnyOf:
    tests: tuple[Test, ...]

    def __call__(self, v: _View) -> str | None:
        for test in self.tests:
            evidence = test(v)
            if evidence is not None:
                return evidence
        return None

    def __str__(self) -> str:
        return " OR ".join(f"({t})" for t in self.tests)


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
