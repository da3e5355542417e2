"""Addresses, Message-IDs and VERP tokens taken from a bounce, each checked before believed."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.parse.bouncetypes import (
    MAX_ADDRESS_CHARS,
    MAX_DOMAIN_CHARS,
    MAX_LOCAL_PART_CHARS,
    MAX_MESSAGE_ID_CHARS,
    MAX_RECIPIENTS,
    MAX_VERP_TOKEN_CHARS,
)
from bot.parse.mail.message import ParsedMessage

_LOCAL_PART = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?:{_LABEL}\.)+{_LABEL}$")
_DOMAIN_LITERAL = re.compile(r"^\[\d{1,3}(?:\.\d{1,3}){3}\]$")


def addr_spec(text: str | None) -> str | None:
    """`text` as a lower-case dot-atom addr-spec, or None when it is anything else.

    Accepts `<a@b.c>` and `rfc822; a@b.c`; refuses spaces, quotes, markup, a
    second @, a domain without a dot, and over-long parts. Quoted local parts
    and non-ASCII (SMTPUTF8) addresses are refused too: rootnotify never sends
    to such an address, so no bounce of ours can be about one.
    """
    if not text or len(text) > MAX_ADDRESS_CHARS + 16:
        return None
    value = text.strip()
    if ";" in value:
        address_type, _, value = value.partition(";")
        if address_type.strip().lower() not in ("rfc822", ""):
            return None
        value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    value = value.lower()
    if len(value) > MAX_ADDRESS_CHARS or value.count("@") != 1 or not value.isascii():
        return None
    local, domain = value.split("@")
    if not local or len(local) > MAX_LOCAL_PART_CHARS or not _LOCAL_PART.match(local):
        return None
    if len(domain) > MAX_DOMAIN_CHARS:
        return None
    if not (_DOMAIN.match(domain) or _DOMAIN_LITERAL.match(domain)):
        return None
    return value


_MSGID = re.compile(r"<([^<>\s@]{1,200}@[^<>\s@]{1,200})>")


def _message_id(text: str | None) -> str | None:
    if not text:
        return None
    found = _MSGID.search(text[:4096])
    if not found or len(found.group(0)) > MAX_MESSAGE_ID_CHARS:
        return None
    return found.group(0)


_VERP_TOKEN = re.compile(r"^[a-z0-9][a-z0-9._=-]*$")
_VERP_TAG = "+bounce-"


def verp_address(base_address: str, token: str) -> str:
    """Our return path for one outgoing mail.

    ("rootnotify@program.test", "42") -> "rootnotify+bounce-42@program.test".

    Tokens are case-insensitive (MTAs lower-case local parts: the AOL sample's
    Delivered-To is lower-case where its To is not), so both are lower-cased.
    Raises ValueError for a base that is not a plain address or already has a
    `+` tag, or a token outside [a-z0-9._=-]: those are programming errors.
    """
    base = addr_spec(base_address)
    token = token.lower()
    if base is None or "+" in base.split("@")[0]:
        raise ValueError(f"not a plain base address for VERP: {base_address!r}")
    if not token or len(token) > MAX_VERP_TOKEN_CHARS or not _VERP_TOKEN.match(token):
        raise ValueError(f"VERP token must be 1-{MAX_VERP_TOKEN_CHARS} of [a-z0-9._=-]: {token!r}")
    local, domain = base.split("@")
    address = f"{local}{_VERP_TAG}{token}@{domain}"
    if addr_spec(address) != address:
        raise ValueError(f"VERP address too long: {address!r}")
    return address


def verp_token(address: str) -> str | None:
    """The token of a `verp_address`, lower-case; None for any other address."""
    value = addr_spec(address)
    if value is None:
        return None
    local = value.split("@")[0]
    base, tag, token = local.partition(_VERP_TAG)
    if not tag or not base or "+" in base:
        return None
    if len(token) > MAX_VERP_TOKEN_CHARS or not _VERP_TOKEN.match(token):
        return None
    return token


def _verp_from(message: ParsedMessage, envelope_to: Sequence[str]) -> str | None:
    # The envelope first; after IMAP or a file only the delivery headers keep
    # it, and a bounce's To is the return path it answers.
    candidates = list(envelope_to)
    for name in ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To"):
        candidates.extend(message.header_all(name))
    for candidate in candidates[:MAX_RECIPIENTS]:
        for piece in re.split(r"[,\s]+", str(candidate)[:MAX_ADDRESS_CHARS * 4]):
            token = verp_token(piece)
            if token:
                return token
    return None
