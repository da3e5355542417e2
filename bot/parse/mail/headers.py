"""Header values decoded and checked: encoded words, address lists, Message-IDs, dates."""

from __future__ import annotations

import binascii
import email.utils
import re
from datetime import UTC, datetime
from email.header import decode_header, make_header

_MSGID_RE = re.compile(r"<[^<>\s]+>")


# An address header longer than this is hostile or broken; real ones with
# hundreds of recipients stay well under it.
MAX_ADDRESS_HEADER = 16_384


def decode_header_value(value: str | None) -> str:
    """An RFC 2047 encoded header value as text; undecodable parts kept as they are."""
    if value is None:
        return ""
    value = str(value)
    try:
        text = str(make_header(decode_header(value)))
    except (UnicodeError, LookupError, ValueError, binascii.Error, RecursionError):
        text = value
    # Unfold: continuation lines are one logical line (RFC 5322 2.2.3).
    return re.sub(r"\r?\n[ \t]+", " ", text).strip()


def parse_addresses(value: str | None) -> list[str]:
    """The addr-specs in an address header, lower-cased, invalid ones dropped."""
    if not value:
        return []
    if len(value) > MAX_ADDRESS_HEADER:
        value = value[:MAX_ADDRESS_HEADER]
    out = []
    try:
        pairs = email.utils.getaddresses([value])
    except (RecursionError, ValueError, IndexError):
        # The stdlib address parser recurses on nested comments; a header
        # built to exhaust it yields no address rather than a crash.
        return []
    for _name, addr in pairs:
        addr = addr.strip().lower()
        if addr and "@" in addr and " " not in addr and "<" not in addr:
            out.append(addr)
    return out


_ENCODED_WORD = re.compile(r"=\?[^?\s]{1,64}\?[bBqQ]\?[^?\s]*\?=")


def _neutral(value: str) -> tuple[str, list[str]]:
    """`value` with each RFC 2047 encoded word replaced by a placeholder, and the words."""
    words: list[str] = []

    def keep(match: re.Match[str]) -> str:
        words.append(match.group(0))
        return f"rnencoded{len(words) - 1}x"

    text = _ENCODED_WORD.sub(keep, value.replace("\r", " ").replace("\n", " "))
    return text, words


def _addresses(value: str | None) -> list[str]:
    """The addresses of a header, read before RFC 2047 decoding.

    An encoded word may only carry a display name (RFC 2047 5): decoding first
    would let `=?utf-8?q?Eve=0D=0ABcc:_x@evil.test?= <a@b.c>` put x@evil.test
    first. The decoded value is read only when the raw one names no address.
    """
    if not value:
        return []
    text, _words = _neutral(value)
    found = [a for a in parse_addresses(text) if "rnencoded" not in a]
    return found or parse_addresses(decode_header_value(value))


def _display_name(value: str | None) -> str:
    if not value:
        return ""
    text, words = _neutral(value)
    name = email.utils.parseaddr(text)[0]
    name = re.sub(r"rnencoded(\d+)x", lambda m: words[int(m.group(1))], name)
    return decode_header_value(name) if name else ""


def message_ids(value: str | None) -> list[str]:
    if not value:
        return []
    return _MSGID_RE.findall(value)


def parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError, AttributeError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        # RFC 5322 "-0000": no zone information; take it as UTC.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
