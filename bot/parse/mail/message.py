"""Raw RFC 5322 bytes to a typed `ParsedMessage`: headers, bodies, attachments.

mail-parser does the MIME walk and the decoding; this module turns its
dicts into typed objects and never raises on malformed input: whatever could
not be read is listed in `defects`, and what lay past a limit of
`bot.parse.mail.limits` (size, parts, depth, headers, attachments) in
`limits_exceeded`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import fields, replace
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from typing import Any

import mailparser

from bot.parse.mail.headers import (
    MAX_ADDRESS_HEADER,
    _addresses,
    _display_name,
    decode_header_value,
    message_ids,
    parse_addresses,
    parse_date,
)
from bot.parse.mail.largeparts import LiftedParts, lift
from bot.parse.mail.limits import DEFAULT_LIMITS, MessageLimits
from bot.parse.mail.parsed import STREAM_BUFFER_BYTES, Attachment, ParsedMessage

# Callers import the parsed types and the header helpers from here, as before the split.
__all__ = [
    "MAX_ADDRESS_HEADER", "STREAM_BUFFER_BYTES", "Attachment", "ParsedMessage",
    "decode_header_value", "message_ids", "parse_addresses", "parse_date", "parse_message",
    "without_nul",
]

log = logging.getLogger("rootnotify.parse")


# mail-parser logs every content type it does not flatten; that is not news.
logging.getLogger("mailparser").setLevel(logging.ERROR)


def _headers_of(msg: Message) -> list[tuple[str, str]]:
    out = []
    for key, value in msg.raw_items() if hasattr(msg, "raw_items") else msg.items():
        out.append((str(key), decode_header_value(_text(value))))  # raw_items: stored values
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


def _text(value: object) -> str | None:
    """A header value as `str`: compat32 returns `email.header.Header` for raw 8-bit values."""
    if value is None:
        return None
    try:
        text = str(value)
    except Exception:  # a Header with undecodable chunks
        return None
    return _undo_surrogates(text)


def _undo_surrogates(text: str) -> str:
    """Raw 8-bit header bytes (kept as surrogate escapes) read as UTF-8, else Latin-1."""
    if text.isascii() or not any("\udc80" <= c <= "\udcff" for c in text):
        return text
    data = text.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _raw_header(msg: Message, name: str) -> object:
    """The first `name` header as stored (a str with surrogate escapes), not a Header object."""
    wanted = name.lower()
    for key, value in getattr(msg, "_headers", []):
        if str(key).lower() == wanted:
            return value
    return msg.get(name)


_HEAD_END = re.compile(rb"\r?\n\r?\n")
_FIELD_START = re.compile(rb"^[^ \t\r\n]", re.MULTILINE)


def _limit_head(raw: bytes, limits: MessageLimits, exceeded: list[str]) -> bytes:
    """`raw` with its header block cut to the header-count and line-length limits."""
    split = _HEAD_END.search(raw)
    # The body is sliced off only when the head is cut: a list mail's is ~100 MB.
    head = raw[: split.start()] if split else raw
    lines = head.splitlines(keepends=True)
    long_lines = 0
    fields = 0
    kept: list[bytes] = []
    for line in lines:
        if _FIELD_START.match(line):
            fields += 1
            if fields > limits.max_headers:
                exceeded.append(f"header fields: more than {limits.max_headers}; "
                                f"the fields after the {limits.max_headers}th were not read")
                break
        if len(line) > limits.max_header_line:
            long_lines += 1
            ending = b"\r\n" if line.endswith(b"\r\n") else b"\n"
            line = line[: limits.max_header_line] + ending
        kept.append(line)
    if long_lines:
        exceeded.append(f"header line length: {long_lines} line(s) longer than "
                        f"{limits.max_header_line} characters were cut")
    if not long_lines and fields <= limits.max_headers:
        return raw
    return b"".join(kept) + (raw[split.start():] if split else b"")


def _prune(msg: Message, limits: MessageLimits, exceeded: list[str]) -> None:
    """Cut the MIME tree in place to the part-count and depth limits (document order kept)."""
    count = 0
    too_deep = 0
    cut_at: int | None = None
    # (part, depth, parent's payload list, index in it); children pushed reversed
    # so that parts are visited in document order, without recursion.
    stack: list[tuple[Message, int, list | None, int]] = [(msg, 0, None, 0)]
    while stack:
        part, depth, siblings, index = stack.pop()
        if count >= limits.max_parts:
            if siblings is not None:
                del siblings[index:]
            cut_at = count
            continue
        count += 1
        payload = part._payload  # compat32: a list for multipart/* and message/*
        if not isinstance(payload, list) or not payload:
            continue
        if depth >= limits.max_depth:
            too_deep += 1
            part._payload = []
            continue
        for i in range(len(payload) - 1, -1, -1):
            child = payload[i]
            if isinstance(child, Message):
                stack.append((child, depth + 1, payload, i))
    if cut_at is not None:
        exceeded.append(f"MIME parts: more than {limits.max_parts}; "
                        f"the parts after the {limits.max_parts}th were not read")
    if too_deep:
        exceeded.append(f"MIME nesting depth: {too_deep} part(s) nested deeper than "
                        f"{limits.max_depth} levels were not read")


def parse_message(raw: bytes, limits: MessageLimits = DEFAULT_LIMITS, *,
                  span: tuple[int, int] | None = None) -> ParsedMessage:
    """Parse `raw`; never raises for any input (defects and limits passed are recorded).

    With `span`, the message parsed is raw[start:end] (a signed reply's signed
    part), read in place: its large attachments are never copied out whole.
    """
    try:
        return _without_nul(_parse(raw, limits, span))
    except Exception as exc:  # the last line of defence: a bug must not stop the pipeline
        log.exception("parse_message failed; keeping an empty parse")
        return _empty(f"message unreadable: {type(exc).__name__}: {exc}")


def without_nul(text: str) -> str:
    """`text` with each NUL as U+FFFD.

    Mail text may not hold NUL (RFC 5322 2.2, 3.5), hostile mail does, and
    PostgreSQL refuses it in a text column: the message could never be
    recorded there. The replacement character keeps the spot visible.
    """
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _without_nul(parsed: ParsedMessage) -> ParsedMessage:
    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return without_nul(value)
        if isinstance(value, list | tuple):
            return type(value)(clean(v) for v in value)
        return value

    for attachment in parsed.attachments:
        attachment.filename = without_nul(attachment.filename)
        attachment.content_type = without_nul(attachment.content_type)
    return replace(parsed, **{f.name: clean(getattr(parsed, f.name)) for f in fields(parsed)
                              if f.name != "attachments"})


def _empty(defect: str) -> ParsedMessage:
    return ParsedMessage(message_id=None, from_address=None, from_display="", to=[], cc=[],
                         reply_to=[], subject="", date=None, in_reply_to=[], references=[],
                         headers=[], text_plain="", text_html="", defects=[defect])


def _parse(raw: bytes, limits: MessageLimits, span: tuple[int, int] | None = None) -> ParsedMessage:
    defects: list[str] = []
    exceeded: list[str] = []
    start, end = span or (0, len(raw))
    if end - start > limits.max_message_bytes:
        exceeded.append(f"message size: {end - start} bytes exceeds the limit of "
                        f"{limits.max_message_bytes}; the rest was not read")
        end = start + limits.max_message_bytes
        raw, span = (raw[:end], None) if span is None else (raw, (start, end))
    if span is None:
        raw = _limit_head(raw, limits, exceeded)
    else:
        split = _HEAD_END.search(raw, start, end)
        head = raw[start:split.start()] if split else raw[start:end]
        limited = _limit_head(head, limits, exceeded)
        if limited is not head:  # a head cut to the limits: parse a copy, as a whole mail is
            raw, span = limited + (raw[split.start():end] if split else b""), None
    skeleton, lifted = lift(raw) if span is None else lift(raw, span=span)
    if span is not None and lifted is None:
        raw, span = skeleton, None  # nothing lifted: the skeleton is the range's copy
    marks = (len(defects), len(exceeded))
    msg, text_plain, text_html, attachments = _mime(skeleton, limits, lifted, defects, exceeded)
    if lifted is not None and not lifted.complete:
        # A lifted body did not come back as an attachment (a part the parser
        # saw otherwise, or one cut by a limit): parse the ordinary way.
        log.info("large parts not all attachments; parsing the whole message")
        del defects[marks[0]:], exceeded[marks[1]:]
        whole = raw if span is None else raw[span[0]:span[1]]
        msg, text_plain, text_html, attachments = _mime(whole, limits, None, defects, exceeded)

    def get(name: str) -> str | None:
        try:
            return _text(_raw_header(msg, name))
        except Exception:
            return None

    from_value = get("From")
    from_addrs = _addresses(from_value)
    sender_addrs = _addresses(get("Sender"))
    try:
        display = _display_name(from_value)
    except (RecursionError, ValueError, IndexError):
        display = ""
    try:
        headers = _headers_of(msg)
    except Exception as exc:
        defects.append(f"headers unreadable: {type(exc).__name__}")
        headers = []
    return ParsedMessage(
        message_id=(message_ids(get("Message-ID")) or [None])[0],
        # Several authors: the Sender is who sent it (RFC 5322 3.6.2).
        from_address=(sender_addrs[0] if len(from_addrs) > 1 and sender_addrs
                      else from_addrs[0] if from_addrs else None),
        from_display=display,
        to=_addresses(get("To")),
        cc=_addresses(get("Cc")),
        reply_to=_addresses(get("Reply-To")),
        subject=decode_header_value(get("Subject")),
        date=parse_date(get("Date")),
        in_reply_to=message_ids(get("In-Reply-To")),
        references=message_ids(decode_header_value(get("References"))),
        headers=headers,
        text_plain=text_plain,
        text_html=text_html,
        attachments=attachments,
        defects=defects,
        limits_exceeded=exceeded,
        from_addresses=from_addrs,
        sender_address=sender_addrs[0] if sender_addrs else None,
    )


def _mime(raw: bytes, limits: MessageLimits, lifted: LiftedParts | None, defects: list[str],
          exceeded: list[str]) -> tuple[Message, str, str, list[Attachment]]:
    """The MIME walk: the message object, its text bodies and its attachments."""
    try:
        msg: Message = BytesParser(policy=compat32).parsebytes(raw)
        _prune(msg, limits, exceeded)
        mp = mailparser.MailParser(msg)
        text_plain = "\n".join(mp.text_plain)
        text_html = "\n".join(mp.text_html)
        raw_attachments = list(mp.attachments)
        defects.extend(str(d) for d in (mp.defects_categories or []))
    except Exception as exc:  # mail-parser and the stdlib raise many types on hostile input
        log.warning("MIME parsing failed (%s); falling back to the header block only", exc)
        if isinstance(exc, RecursionError) or isinstance(exc.__cause__, RecursionError):
            exceeded.append("MIME nesting depth: too deep to parse; the body was not read")
        defects.append(f"unparseable MIME structure: {type(exc).__name__}: {exc}")
        msg = BytesHeaderParser(policy=compat32).parsebytes(raw)
        text_plain = _fallback_text(msg)
        text_html = ""
        raw_attachments = []
    if lifted is not None:
        text_plain, text_html = lifted.restore(text_plain), lifted.restore(text_html)

    if len(raw_attachments) > limits.max_attachments:
        exceeded.append(f"attachments: {len(raw_attachments)} exceeds the limit of "
                        f"{limits.max_attachments}; the attachments after the "
                        f"{limits.max_attachments}th were not read")
        raw_attachments = raw_attachments[: limits.max_attachments]
    attachments = []
    for item in raw_attachments:
        try:
            attachments.append(_attachment(item, lifted))
        except Exception as exc:  # a single broken part must not lose the others
            defects.append(f"attachment unreadable: {exc}")
    return msg, text_plain, text_html, attachments


def _attachment(item: dict, lifted: LiftedParts | None) -> Attachment:
    filename = str(item.get("filename") or "attachment")
    content_type = str(item.get("mail_content_type") or "application/octet-stream")
    payload = item.get("payload")
    if lifted is not None and isinstance(payload, str):
        index = lifted.index_of(payload) if item.get("binary") else None
        if index is not None:
            lifted.resolved.add(index)
            return Attachment(filename, content_type, lifted=(lifted, index))
        item = {**item, "payload": lifted.restore(payload)}
    return Attachment(filename, content_type, _attachment_bytes(item))


def _fallback_text(msg: Message) -> str:
    try:
        payload = msg.get_payload(decode=True)
    except Exception:
        return ""
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    return ""
