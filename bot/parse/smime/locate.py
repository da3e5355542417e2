"""Find the S/MIME entity in a message's MIME tree and give its parts' exact bytes.

Also the content's canonical (CRLF) form, since the signer hashed one of the
forms and we cannot know which before trying. No CMS here, only MIME.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import collapse_rfc2231_value

from bot.parse.smime.values import Refused

# Limits on hostile input. Real messages stay far below each one.
# Real mail nests multipart/mixed two or three levels around a signature.
MAX_MIME_DEPTH = 8
# Parts looked at per multipart while searching for the S/MIME entity.
MAX_MIME_PARTS = 100

SIGNATURE_TYPES = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature"})
_MIME_TYPES = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
# Hyphens tried as delimiter starts before the plain substring search takes
# over: a miss costs ~0.3 µs, so content full of hyphens loses at most ~20 µs.
_HYPHEN_PROBES = 64
_HEADER_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True)
class Entity:
    headers: Message
    raw: bytes
    body_start: int  # offsets, not a slice: bodies can be megabytes and are scanned in place

    @property
    def body(self) -> bytes:
        return self.raw[self.body_start :]

    @property
    def content_type(self) -> str:
        return self.headers.get_content_type()

    def param(self, name: str) -> str:
        value = self.headers.get_param(name)
        if value is None or (isinstance(value, str) and not value):
            return ""
        return str(collapse_rfc2231_value(value))


def parse_entity(raw: bytes) -> Entity:
    start = 0
    if raw.startswith(b"From "):  # mbox separator line (KMail exports keep it)
        newline = raw.find(b"\n")
        start = newline + 1 if newline >= 0 else len(raw)
    if raw.startswith(b"\n", start) or raw.startswith(b"\r\n", start):
        header_bytes, body_start = b"", raw.find(b"\n", start) + 1
    else:
        end = _HEADER_END.search(raw, start)
        header_bytes = raw[start : end.start()] if end else raw[start:]
        body_start = end.end() if end else len(raw)
    headers = BytesHeaderParser(policy=compat32).parsebytes(header_bytes + b"\n\n")
    return Entity(headers, raw, body_start)


def split_multipart(entity: Entity, boundary: str) -> list[bytes]:
    """The exact bytes of each body part; the line break before a delimiter belongs to it."""
    return [entity.raw[start:end] for start, end in multipart_spans(entity, boundary)]


def multipart_spans(entity: Entity, boundary: str) -> list[tuple[int, int]]:
    """Where in `entity.raw` each body part of `split_multipart` lies, (start, end)."""
    body, first = entity.raw, entity.body_start
    delimiter = b"--" + boundary.encode("utf-8", "replace")
    parts: list[tuple[int, int]] = []
    part_start: int | None = None
    search_from = first
    while len(parts) < MAX_MIME_PARTS:
        if search_from == first and body.startswith(delimiter, first):
            line_start = first
        else:
            found = _find_delimiter_line(body, b"\n" + delimiter, search_from)
            if found < 0:
                break
            line_start = found + 1
        after = line_start + len(delimiter)
        line_end = body.find(b"\n", after)
        line_end = len(body) if line_end < 0 else line_end
        tail = body[after:line_end].rstrip(b"\r")
        closing = tail.startswith(b"--")
        if (tail[2:] if closing else tail).strip(b" \t"):
            search_from = after  # a longer boundary sharing our prefix: not ours
            continue
        if part_start is not None:
            end = max(part_start, line_start - 1)
            if end > part_start and body[end - 1 : end] == b"\r":
                end -= 1
            parts.append((part_start, end))
        if closing:
            break
        part_start = line_end + 1
        search_from = line_end
    return parts


def _find_delimiter_line(body: bytes, needle: bytes, start: int) -> int:
    """`body.find(needle, start)` for a needle b"\\n--boundary", found by its hyphen.

    The part before the signature is the whole message, often a megabyte; a
    search for one byte (memchr) is ~9x faster over it than a substring
    search, and base64 and most text hold few hyphens. Hyphen-rich content
    hands over to the substring search after a few misses.
    """
    pos = start
    for _ in range(_HYPHEN_PROBES):
        hyphen = body.find(b"-", pos + 1)  # needle[1]: a match at i has its hyphen at i + 1
        if hyphen < 0:
            return -1
        if body.startswith(needle, hyphen - 1):
            return hyphen - 1
        pos = hyphen  # every candidate before this hyphen has been tried
    return body.find(needle, pos)


def find_smime(raw: bytes, depth: int = 0) -> tuple[str, Entity, int] | None:
    """(kind, entity, depth): kind "signed" for multipart/signed, "mime" for pkcs7-mime."""
    entity = parse_entity(raw)
    kind = smime_kind(entity)
    if kind is not None:
        return kind, entity, depth
    ctype = entity.content_type
    if not ctype.startswith("multipart/") or depth >= MAX_MIME_DEPTH:
        return None
    boundary = entity.param("boundary")
    if not boundary:
        return None
    raw = entity.raw
    for start, end in multipart_spans(entity, boundary):
        # A part is copied out only when it may hold S/MIME: by its own
        # headers, judged first (a list mail's attachment part is ~100 MB).
        head_end = _HEADER_END.search(raw, start, end)
        if head_end is not None and not raw.startswith(b"From ", start):
            head = parse_entity(raw[start:head_end.end()])
            if smime_kind(head) is None and not head.content_type.startswith("multipart/"):
                continue
        found = find_smime(raw[start:end], depth + 1)
        if found is not None:
            return found
    return None


def smime_kind(entity: Entity) -> str | None:
    ctype = entity.content_type
    if ctype == "multipart/signed":
        return "signed"
    if ctype in _MIME_TYPES or (
        ctype == "application/octet-stream" and entity.param("name").lower().endswith(".p7m")
    ):
        return "mime"
    return None


def looks_like_smime(raw: bytes | memoryview) -> bool:
    """Is `raw` itself an S/MIME entity? Header bytes are screened before the (slower) parse."""
    end = _HEADER_END.search(raw)
    if isinstance(raw, memoryview):  # a large signed content: only its head is needed
        raw = bytes(raw[: end.end()] if end else raw)
    head = (raw[: end.start()] if end else raw).lower()
    if b"pkcs7" not in head and b"multipart/signed" not in head and b".p7m" not in head:
        return False
    return smime_kind(parse_entity(raw)) is not None


def decode_body(entity: Entity) -> bytes:
    encoding = str(entity.headers.get("content-transfer-encoding", "")).strip().lower()
    if encoding != "base64":
        return entity.body
    compact = b"".join(entity.body.split())
    compact += b"=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error as exc:
        raise Refused(f"S/MIME body is not valid base64: {exc}") from exc


def content_forms(content: bytes) -> Iterator[bytes]:
    """The content as given and in canonical CRLF form: clients differ in which they sign.

    Lazily, most likely first (judged by the first line end), because each
    form costs a pass over the content as long as the hash itself.
    """
    newline = content.find(b"\n")
    if newline < 0:
        yield content
        return
    if content[newline - 1 : newline] == b"\r":
        yield content
    if b"\r" in content:  # mixed line ends: normalise both kinds
        canonical = content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    else:  # plain LF, as stored by most mailbox formats: one pass
        canonical = content.replace(b"\n", b"\r\n")
    if canonical != content:
        yield canonical
    if content[newline - 1 : newline] != b"\r":
        yield content
