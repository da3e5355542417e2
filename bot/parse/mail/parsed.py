"""The typed result of parsing one mail: its headers, bodies and attachments."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from bot.parse.mail.largeparts import LiftedParts

# Read-ahead of an attachment's stream: what the list parser peeks at to sniff
# the format (bot.parse.mail.archives.CHUNK).
STREAM_BUFFER_BYTES = 1 << 16


class Attachment:
    """One attached file: name, MIME type and bytes.

    `data` may be decoded on first use (`loader`) and is then kept: a large
    attachment lifted out before parsing (bot.parse.mail.largeparts) is decoded
    once, when someone reads it, not while the message is parsed.
    """

    __slots__ = ("_data", "_loader", "_parts", "content_type", "filename")

    def __init__(self, filename: str, content_type: str, data: bytes | None = None, *,
                 loader: Callable[[], bytes] | None = None,
                 lifted: tuple[LiftedParts, int] | None = None) -> None:
        if data is None and loader is None and lifted is None:
            raise TypeError("an Attachment needs data, a loader or a lifted part")
        self.filename = filename
        self.content_type = content_type
        self._data = data
        self._parts = lifted  # read from the raw message without decoding it whole
        if loader is None and lifted is not None:
            loader = partial(lifted[0].decode, lifted[1])
        self._loader = loader

    def open(self) -> io.BufferedReader:
        """The bytes as a stream; a lifted part is decoded as it is read, never held whole."""
        if self._data is None and self._parts is not None:
            parts, index = self._parts
            return io.BufferedReader(parts.open(index), buffer_size=STREAM_BUFFER_BYTES)
        return io.BufferedReader(io.BytesIO(self.data),  # type: ignore[arg-type]
                                 buffer_size=STREAM_BUFFER_BYTES)

    def head(self, size: int) -> bytes:
        """The first `size` bytes (fewer if it is shorter)."""
        if self._data is None and self._parts is not None:
            with self.open() as stream:
                return stream.read(size)
        return self.data[:size]

    @property
    def size(self) -> int:
        if self._data is None and self._parts is not None:
            parts, index = self._parts
            return parts.size(index)
        return len(self.data)

    @property
    def data(self) -> bytes:
        if self._data is None:
            assert self._loader is not None
            self._data = self._loader()
            self._loader = self._parts = None
        return self._data

    @property
    def lifted_parts(self) -> LiftedParts | None:
        """The lifted parts this attachment is read from, while it is not decoded."""
        return self._parts[0] if self._data is None and self._parts is not None else None

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled (bot.service.analysispool) with its bytes: a loader does not travel. A
        # lifted part detached from its raw message travels as its span instead.
        if self._data is None and self._parts is not None and self._parts[0].detached:
            return (_lifted_attachment, (self.filename, self.content_type, *self._parts))
        return (Attachment, (self.filename, self.content_type, self.data))

    @property
    def extension(self) -> str:
        name = self.filename.lower()
        return name.rsplit(".", 1)[-1] if "." in name else ""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Attachment):
            return NotImplemented
        return (self.filename, self.content_type, self.data) == (
            other.filename, other.content_type, other.data)

    def __hash__(self) -> int:
        return hash((self.filename, self.content_type, self.data))

    def __repr__(self) -> str:
        size = "not decoded yet" if self._data is None else f"{len(self._data)} bytes"
        return f"Attachment({self.filename!r}, {self.content_type!r}, {size})"


def _lifted_attachment(filename: str, content_type: str, parts: LiftedParts,
                       index: int) -> Attachment:
    return Attachment(filename, content_type, lifted=(parts, index))


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
    # Limits passed (bot.parse.mail.limits), one sentence each saying what was not read.
    limits_exceeded: list[str] = field(default_factory=list)
    # Every address of the From field (RFC 5322 3.6.2 allows several, then a
    # Sender must say who sent it) and the Sender field's address.
    from_addresses: list[str] = field(default_factory=list)
    sender_address: str | None = None

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
