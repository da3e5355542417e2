"""The checks the automatic-mail rules are built from: each looks at one thing and says why."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bot.parse.mail.message import ParsedMessage, parse_addresses

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
