"""Whether the header From of a mail can be taken as who sent it, as a table of doubts.

The From is the sender when it names exactly one address (RFC 5322 3.6.2: a
From with several authors needs a Sender naming the one who sent it), and,
for a CA contact, when the SMTP envelope (MAIL FROM) comes from the same
domain or one of its sub- or parent domains (a bounce domain such as
bounces.exampleca.test). A mail failing either is no contact's: it is
quarantined and staff are told, because nothing else authenticates a CA's
From.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.parse.mail.message import ParsedMessage

Doubt = Callable[[ParsedMessage, str | None], str | None]


def _domain(address: str | None) -> str:
    return (address or "").strip().strip("<>").rpartition("@")[2].lower().rstrip(".")


def _related(a: str, b: str) -> bool:
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def several_authors(message: ParsedMessage, envelope_from: str | None) -> str | None:
    if len(message.from_addresses) > 1 and not message.sender_address:
        return (f"From names {len(message.from_addresses)} addresses "
                f"({', '.join(message.from_addresses)}) and no Sender says which sent it")
    return None


def envelope_elsewhere(message: ParsedMessage, envelope_from: str | None) -> str | None:
    envelope = _domain(envelope_from)
    header = _domain(message.from_address)
    if not envelope or not header or _related(envelope, header):
        return None  # no envelope (IMAP, files, a bounce's null sender): nothing to compare
    return (f"From {message.from_address} is of {header}, but the envelope sender "
            f"<{envelope_from}> is of {envelope}")


# For any sender (staff and CA contacts alike), then for CA contacts.
ANY_SENDER: tuple[Doubt, ...] = (several_authors,)
CA_CONTACT: tuple[Doubt, ...] = (envelope_elsewhere,)


def first_doubt(doubts: tuple[Doubt, ...], message: ParsedMessage,
                envelope_from: str | None) -> str | None:
    for doubt in doubts:
        reason = doubt(message, envelope_from)
        if reason:
            return reason
    return None
