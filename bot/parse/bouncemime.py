"""A bounce's MIME structure, read once and bounded, and its RFC 3464 delivery-status fields."""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message

from bot.parse.bounceaddress import _message_id, addr_spec
from bot.parse.bouncetypes import (
    _ACTIONS,
    MAX_BOUNCE_BYTES,
    MAX_DIAGNOSTIC_CHARS,
    MAX_PARTS,
    MAX_RECIPIENTS,
    MAX_TEXT_CHARS,
    BouncedRecipient,
)

_DS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_MDN_TYPES = frozenset(
    {"message/disposition-notification", "message/global-disposition-notification"}
)
_RETURNED_MESSAGE = frozenset({"message/rfc822", "message/global"})
_RETURNED_HEADERS = frozenset(
    {"text/rfc822-headers", "message/rfc822-headers", "message/global-headers"}
)


@dataclass
class _Structure:
    top_type: str = "text/plain"
    report_type: str | None = None
    status_texts: list[str] = field(default_factory=list)  # message/delivery-status bodies
    mdn_texts: list[str] = field(default_factory=list)
    human_text: str = ""
    returned_message_id: str | None = None
    returned_headers_id: str | None = None


def _decoded_text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, TypeError, LookupError, binascii.Error):
        payload = None
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = "utf-8"
    try:
        charset = part.get_content_charset() or "utf-8"
        codecs.lookup(charset)
    except (LookupError, ValueError, TypeError):
        # Unknown names ("unicode-1-1-utf-7", "fakescii"): the text we look
        # for is ASCII, so any ASCII-compatible reading finds it.
        charset = "utf-8"
    return payload[:MAX_TEXT_CHARS].decode(charset, "replace")


def _report_text(part: Message) -> str:
    """A message/delivery-status body as text again (compat32 splits it into header blocks)."""
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload
    blocks = []
    for block in payload if isinstance(payload, list) else []:
        if not isinstance(block, Message):
            continue
        fields = "\n".join(f"{k}: {v}" for k, v in block.items())
        rest = block.get_payload()
        blocks.append(fields + ("\n\n" + rest if isinstance(rest, str) and rest.strip() else ""))
    return "\n\n".join(blocks)


def _walk(msg: Message) -> Iterator[Message]:
    """Parts of `msg`, bounded, never entering a returned mail or a report's field blocks."""
    stack: list[Message] = [msg]
    seen = 0
    while stack and seen < MAX_PARTS:
        part = stack.pop()
        seen += 1
        yield part
        if part.get_content_type() in _RETURNED_MESSAGE | _DS_TYPES | _MDN_TYPES:
            continue  # their payloads are a returned mail or report fields, not report parts
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, Message)]))


def _structure(raw: bytes) -> _Structure:
    msg = email.message_from_bytes(raw[:MAX_BOUNCE_BYTES], policy=email.policy.compat32)
    found = _Structure(top_type=msg.get_content_type())
    report_type = msg.get_param("report-type")
    found.report_type = report_type.lower() if isinstance(report_type, str) else None
    texts: list[str] = []
    size = 0
    for part in _walk(msg):
        ctype = part.get_content_type()
        if ctype in _DS_TYPES:
            found.status_texts.append(_report_text(part))
        elif ctype in _MDN_TYPES:
            found.mdn_texts.append(_report_text(part))
        elif ctype in _RETURNED_MESSAGE and found.returned_message_id is None:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found.returned_message_id = _message_id(str(inner[0].get("Message-ID", "")))
        elif ctype in _RETURNED_HEADERS and found.returned_headers_id is None:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                # compat32 parses message/rfc822-headers (MailSite) as a message.
                found.returned_headers_id = _message_id(str(inner[0].get("Message-ID", "")))
            else:
                found.returned_headers_id = _header_message_id(_decoded_text(part))
        elif ctype == "text/plain" and size < MAX_TEXT_CHARS:
            text = _decoded_text(part)
            texts.append(text)
            size += len(text)
    found.human_text = "\n".join(texts)[:MAX_TEXT_CHARS]
    return found


def _fallback_structure(raw: bytes) -> _Structure:
    # The stdlib parser failed on hostile bytes: read the head as text.
    return _Structure(human_text=raw[:MAX_TEXT_CHARS].decode("latin-1"))


_HEADER_MSGID = re.compile(r"^[ \t]*message-id[ \t]*:[ \t]*(<[^<>\s]+>)", re.I | re.M)


def _header_message_id(text: str) -> str | None:
    found = _HEADER_MSGID.search(text[:MAX_TEXT_CHARS])
    return _message_id(found.group(1)) if found else None


_BASE64_BLOCK = re.compile(r"^[A-Za-z0-9+/=\s]{16,}$")
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_REPLY_CODE = re.compile(r"(?<![\w.\[#])([245])\d\d(?=[ -]\S)")


def _blocks(text: str, *, decode_base64: bool = True) -> Iterator[dict[str, str]]:
    """Blank-line separated groups of `Name: value` fields, names lower-cased."""
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text[:MAX_TEXT_CHARS]):
        if decode_base64 and ":" not in chunk and _BASE64_BLOCK.match(chunk):
            # Exchange Online re-encodes the per-recipient fields of a relayed
            # Postfix DSN as a base64 blob inside the report part.
            try:
                decoded = base64.b64decode(re.sub(r"\s", "", chunk), validate=True)
            except (binascii.Error, ValueError):
                continue
            yield from _blocks(decoded.decode("utf-8", "replace"), decode_base64=False)
            continue
        fields: dict[str, str] = {}
        last = None
        for line in chunk.splitlines():
            if line[:1] in (" ", "\t") and last:
                fields[last] += " " + line.strip()
            elif ":" in line:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if re.fullmatch(r"[a-z0-9-]{1,60}", name):
                    last = name
                    fields.setdefault(name, value.strip())
        if fields:
            yield fields


def _status(text: str | None) -> str | None:
    if not text:
        return None
    found = _STATUS.search(text)
    return ".".join(found.groups()) if found else None


def _diagnostic(text: str | None) -> str | None:
    if not text:
        return None
    value = re.sub(r"\s+", " ", text).strip()
    value = re.sub(r"^[A-Za-z0-9-]{1,20}\s*;\s*", "", value)  # the "smtp;" type
    value = value.strip(" '\"")
    if len(value) > MAX_DIAGNOSTIC_CHARS:
        value = value[: MAX_DIAGNOSTIC_CHARS - 1] + "…"
    return value or None


def _status_from_diagnostic(diagnostic: str | None) -> str | None:
    """An enhanced code in the text, else a bare SMTP reply's class (550 -> 5.0.0, RFC 3463)."""
    if not diagnostic:
        return None
    return _status(diagnostic) or (
        f"{found.group(1)}.0.0" if (found := _REPLY_CODE.search(diagnostic)) else None
    )


def _action(value: str | None, status: str | None, fallback: str) -> str:
    token = (value or "").strip().split(" ")[0].lower()
    if token in _ACTIONS:
        return token
    if status:  # no or unknown Action: the status class says it
        return {"5": "failed", "4": "delayed", "2": "delivered"}[status[0]]
    return fallback


def _recipients_from_fields(
    texts: Sequence[str],
) -> tuple[list[BouncedRecipient], dict[str, str]]:
    recipients: list[BouncedRecipient] = []
    per_message: dict[str, str] = {}
    for text in texts:
        for fields in _blocks(text):
            final = addr_spec(fields.get("final-recipient"))
            original = addr_spec(fields.get("original-recipient"))
            if final is None and original is None:
                if not recipients:
                    per_message.update({k: v for k, v in fields.items() if k not in per_message})
                continue
            diagnostic = _diagnostic(fields.get("diagnostic-code"))
            status = _status(fields.get("status")) or _status_from_diagnostic(diagnostic)
            # Boxbe puts Action: in the per-message block; only a recipient's own counts.
            action = _action(fields.get("action"), status, "failed")
            recipients.append(
                BouncedRecipient(
                    address=final or original or "",
                    action=action,
                    status=status,
                    diagnostic=diagnostic,
                    original_address=original,
                )
            )
            if len(recipients) >= MAX_RECIPIENTS:
                return recipients, per_message
    return recipients, per_message
