"""Text-only bounces: an intro line, then the failed addresses, each with some detail."""

from __future__ import annotations

import re

from bot.parse.bounceaddress import addr_spec
from bot.parse.bouncemime import _REPLY_CODE, _diagnostic, _status, _status_from_diagnostic
from bot.parse.bouncetypes import (
    MAX_ADDRESS_CHARS,
    MAX_DETAIL_LINES,
    MAX_LINES_AFTER_INTRO,
    MAX_RECIPIENTS,
    MAX_TEXT_CHARS,
    BouncedRecipient,
)
from bot.parse.mail.message import ParsedMessage

# (pattern of the intro line, action of the addresses after it, reader name)
TEXT_INTROS: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern, re.I), action, source)
    for pattern, action, source in (
        (r"following address(?:\(es\))? failed", "failed", "exim-text"),
        (r"address(?:\(es\))? (?:have|has) (?:yet|not yet been) (?:to be )?delivered", "delayed",
         "exim-text"),
        (r"wasn't able to deliver your message to the following addresses", "failed", "qmail-text"),
        (r"delivery to the following recipients? failed permanently", "failed", "gmail-text"),
        (r"delivery to the following recipients? has been delayed", "delayed", "gmail-text"),
        (r"delivery has failed to these recipients or groups", "failed", "exchange-text"),
        (r"did not reach the following recipient", "failed", "exchange-text"),
        (r"following addresses had permanent fatal errors", "failed", "sendmail-text"),
        (r"following addresses had transient non-fatal errors", "delayed", "sendmail-text"),
        (r"following addresses had delivery problems", "failed", "sendmail-text"),
        (r"could not\s+be delivered to one or more recipients", "failed", "postfix-text"),
    )
)


# Where the returned copy begins: nothing after it is about the delivery.
_COPY_MARKER = re.compile(
    r"^\s*(?:-+ ?This is a copy of the message|--- Below this line is a copy|-+ ?Original message"
    r"|Original message (?:headers|follows)|-+ ?The header of the original message"
    r"|-+ ?Transcript of session follows)",
    re.I,
)
_ADDRESS_LINE = re.compile(
    r"^\s*<?(?P<addr>[^\s<>()\"',;:]+@[^\s<>()\"',;:]+?)>?"
    r"(?:<mailto:[^>]*>)?(?:\s*:|\s+on\s.*|\s+\(.*\)|\s*:\s.*)?\s*$",
    re.I,
)


def _text_recipients(text: str) -> tuple[list[BouncedRecipient], str | None]:
    lines = text[:MAX_TEXT_CHARS].splitlines()
    for index, line in enumerate(lines):
        for intro, action, source in TEXT_INTROS:
            if intro.search(line):
                found = _after_intro(lines[index + 1 : index + 1 + MAX_LINES_AFTER_INTRO], action)
                if found:
                    return found, source
    return [], None


def _after_intro(lines: list[str], action: str) -> list[BouncedRecipient]:
    details: dict[str, list[str]] = {}
    current: str | None = None
    for line in lines:
        if _COPY_MARKER.match(line):
            break
        matched = _ADDRESS_LINE.match(line)
        address = addr_spec(matched.group("addr")) if matched else None
        if address:
            current = address
            details.setdefault(address, [])
            rest = line[matched.end("addr") :].strip(" >:") if matched else ""
            if rest and not rest.lower().startswith(("on ", "<mailto")):
                details[address].append(rest)
            if len(details) >= MAX_RECIPIENTS:
                break
        elif current and line.strip() and len(details[current]) < MAX_DETAIL_LINES:
            details[current].append(line.strip())
    recipients = []
    for address, lines_of in details.items():
        detail = " ".join(lines_of)
        reply = _REPLY_CODE.search(detail)
        diagnostic = _diagnostic(detail[reply.start() :] if reply else (lines_of or [""])[0])
        status = _status(detail) or _status_from_diagnostic(diagnostic)
        recipients.append(BouncedRecipient(address, action, status, diagnostic))
    return recipients


def _failed_recipients_header(message: ParsedMessage) -> list[BouncedRecipient]:
    out: list[BouncedRecipient] = []
    for value in message.header_all("X-Failed-Recipients"):
        for piece in re.split(r"[,\s]+", value[: MAX_ADDRESS_CHARS * MAX_RECIPIENTS]):
            address = addr_spec(piece)
            if address and all(r.address != address for r in out):
                out.append(BouncedRecipient(address, "failed", None, None))
    return out[:MAX_RECIPIENTS]
