"""Raw RFC 5322 bytes to a typed `ParsedMessage`: headers, bodies, attachments.

mail-parser does the MIME walk and the decoding; this module turns its
dicts into typed objects and never raises on malformed input: whatever could
not be read is listed in `defects`.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message

import mailparser

log = logging.getLogger("rootnotify.parse")

_MSGID_RE = re.compile(r"<[^<>\s]+>")
# An address header longer than this is hostile or broken; real ones with
# hundreds of recipients stay well under it.
MAX_ADDRESS_HEADER = 16_384

# mail-parser logs every content type it does not flatten; that is not news.
logging.getLogger("mailparser").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes

    @property
    def extension(self) -> str:
        name = self.filename.lower()
        return name.rsplit(".", 1)[-1] if "." in name else ""


@dataclass
class ParsedMessage:
    message_id: str | None
    from_address: str | None
    from_display: str
    to: list[str]
    cc: list[str]
    reply_to: list[str]
    subject: str
    date: datetime | None
    in_reply_to: list[str]
    references: list[str]
    headers: list[tuple[str, str]]
    text_plain: str
    text_html: str
    attachments: list[Attachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), decoded."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    @property
    def thread_ids(self) -> list[str]:
        """Message-IDs this message answers, nearest first (In-Reply-To, then References)."""
        seen: list[str] = []
        for mid in [*self.in_reply_to, *reversed(self.references)]:
            if mid not in seen:
                seen.append(mid)
        return seen


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


def message_ids(value: str | None) -> list[str]:
    if not value:
        return []
    return _MSGID_RE.findall(value)


def parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        # RFC 5322 "-0000": no zone information; take it as UTC.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _headers_of(msg: Message) -> list[tuple[str, str]]:
    out = []
    for key, value in msg.raw_items() if hasattr(msg, "raw_items") else msg.items():
        out.append((str(key), decode_header_value(value)))
    return out


def _attachment_bytes(item: dict) -> bytes:
    payload = item.get("payload") or ""
    if item.get("binary"):
        try:
            return base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError):
            return payload.encode("latin-1", "replace")
    if isinstance(payload, bytes):
        return payload
    charset = item.get("charset") or "utf-8"
    try:
        return payload.encode(charset, "replace")
    except LookupError:
        return payload.encode("utf-8", "replace")


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse `raw`; never raises for malformed mail (defects are recorded instead)."""
    defects: list[str] = []
    try:
        mp = mailparser.parse_from_bytes(raw)
        msg: Message = mp.message
        text_plain = "\n".join(mp.text_plain)
        text_html = "\n".join(mp.text_html)
        raw_attachments = list(mp.attachments)
        defects.extend(str(d) for d in (mp.defects_categories or []))
    except Exception as exc:  # mail-parser raises many types on hostile input
        log.warning("mail-parser failed (%s); falling back to the header block only", exc)
        defects.append(f"unparseable MIME structure: {type(exc).__name__}: {exc}")
        import email as _email

        msg = _email.message_from_bytes(raw)
        text_plain = _fallback_text(msg)
        text_html = ""
        raw_attachments = []

    attachments = []
    for item in raw_attachments:
        try:
            attachments.append(
                Attachment(
                    filename=str(item.get("filename") or "attachment"),
                    content_type=str(item.get("mail_content_type") or "application/octet-stream"),
                    data=_attachment_bytes(item),
                )
            )
        except Exception as exc:  # a single broken part must not lose the others
            defects.append(f"attachment unreadable: {exc}")

    from_value = msg.get("From")
    from_addrs = parse_addresses(decode_header_value(from_value) if from_value else None)
    try:
        display = email.utils.parseaddr(decode_header_value(from_value))[0] if from_value else ""
    except (RecursionError, ValueError, IndexError):
        display = ""
    return ParsedMessage(
        message_id=(message_ids(msg.get("Message-ID")) or [None])[0],
        from_address=from_addrs[0] if from_addrs else None,
        from_display=display,
        to=parse_addresses(decode_header_value(msg.get("To"))),
        cc=parse_addresses(decode_header_value(msg.get("Cc"))),
        reply_to=parse_addresses(decode_header_value(msg.get("Reply-To"))),
        subject=decode_header_value(msg.get("Subject")),
        date=parse_date(msg.get("Date")),
        in_reply_to=message_ids(msg.get("In-Reply-To")),
        references=message_ids(decode_header_value(msg.get("References"))),
        headers=_headers_of(msg),
        text_plain=text_plain,
        text_html=text_html,
        attachments=attachments,
        defects=defects,
    )


def _fallback_text(msg: Message) -> str:
    try:
        payload = msg.get_payload(decode=True)
    except Exception:
        return ""
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    return ""
