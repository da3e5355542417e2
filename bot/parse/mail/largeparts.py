"""Large base64 attachments lifted out of a message before MIME parsing, decoded on demand.

The stdlib parser reads a body line by line and keeps every line as a string
before joining them; mail-parser then keeps the base64 text and the caller a
decoded copy. For a 45 MB mail with a 33 MB certificate list that peaked at
~400 MiB. `lift` cuts each large base64 attachment body out of the bytes
(leaving a short placeholder), so the parser sees a skeleton of a few KB;
`LiftedParts.decode` turns a placeholder back into the attachment's bytes
with one `a2b_base64` over a view of the original bytes, no copy of the text.

Only bodies that are plainly an attachment are lifted: the part's own headers
declare `Content-Transfer-Encoding: base64` and a file name (which is what
makes mail-parser treat a part as an attachment), and the whole body, up to
the next boundary line, is base64 text. Anything else is parsed as before.
The caller checks that every placeholder came back as an attachment (or
inside one) and parses the whole message the ordinary way if one did not.
"""

from __future__ import annotations

import binascii
import io
import re
import secrets
from dataclasses import dataclass, field

# Bodies smaller than this are parsed the ordinary way: the parser's per-line
# strings cost about three times a body's size, which matters from a few
# hundred KB up (certificate lists, big PDFs), not for forms and letters.
LIFT_MIN_BYTES = 256 * 1024

_B64_CTE = re.compile(rb"^content-transfer-encoding:[ \t]*base64[ \t]*\r?$",
                      re.IGNORECASE | re.MULTILINE)
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_NAMED = re.compile(rb"filename|[ \t;]name\*?=", re.IGNORECASE)
_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/=\r\n]*")
_PADDING_TAIL = re.compile(rb"={1,2}[\r\n]*")
# Base64 text decoded at a time when a lifted part is read as a stream: the
# decoded attachment is never held whole (a 1,000,000-row list is 85 MB).
STREAM_SLICE_BYTES = 1 << 20


@dataclass
class LiftedParts:
    """The spans cut out of `source`, each replaced by `placeholder(i)`."""

    source: bytes = field(repr=False)  # the whole raw message: megabytes
    spans: list[tuple[int, int]] = field(default_factory=list)
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))
    resolved: set[int] = field(default_factory=set)
    # Sent between processes without `source` (see `detach`): the receiver
    # holds the same raw message and gives it back with `attach`.
    detached: bool = False

    def detach(self, raw: bytes) -> bool:
        """Drop `source` before pickling when it is `raw`, which the receiver also holds."""
        if self.source is not raw:
            return False
        self.source, self.detached = b"", True
        return True

    def attach(self, raw: bytes) -> None:
        """Give a detached part its raw message back (the one `detach` was given)."""
        if self.detached:
            self.source, self.detached = raw, False

    def _check_attached(self) -> None:
        if self.detached:  # reading b"" would give an empty attachment, silently
            raise RuntimeError("a lifted part was read before its raw message was attached")

    def placeholder(self, index: int) -> str:
        # Base64 letters only, so the skeleton's part is still valid base64.
        return f"RNLIFTED{self.nonce}N{index}X"

    def index_of(self, payload: object) -> int | None:
        """The span a payload stands for, when it is exactly one placeholder."""
        if not isinstance(payload, str) or self.nonce not in payload:
            return None
        match = re.fullmatch(rf"\s*RNLIFTED{self.nonce}N(\d+)X\s*", payload)
        return int(match.group(1)) if match else None

    def decode(self, index: int) -> bytes:
        """The attachment's bytes; the base64 text itself if it does not decode (as before)."""
        self._check_attached()
        start, end = self.spans[index]
        view = memoryview(self.source)[start:end]
        try:
            return binascii.a2b_base64(view)
        except binascii.Error:
            return bytes(view)

    def _streamable(self, index: int) -> bool:
        """Whether decoding slice by slice gives exactly what one `decode` gives.

        True when the data characters are whole groups of four and padding
        comes only at the end; anything else (which `decode` may refuse, and
        then returns the text itself) is decoded whole, as before.
        """
        self._check_attached()
        start, end = self.spans[index]
        source = self.source
        data = end - start - source.count(b"\r", start, end) - source.count(b"\n", start, end)
        if data % 4:
            return False
        pad = source.find(b"=", start, end)
        return pad < 0 or _PADDING_TAIL.fullmatch(source, pad, end) is not None

    def size(self, index: int) -> int:
        """The decoded attachment's length, without decoding it."""
        if not self._streamable(index):
            return len(self.decode(index))
        start, end = self.spans[index]
        source = self.source
        data = end - start - source.count(b"\r", start, end) - source.count(b"\n", start, end)
        return data // 4 * 3 - source.count(b"=", start, end)

    def open(self, index: int) -> io.RawIOBase:
        """The attachment's bytes as a stream, decoded a slice at a time from the source."""
        if not self._streamable(index):
            return io.BytesIO(self.decode(index))  # type: ignore[return-value]
        start, end = self.spans[index]
        return _Base64Reader(self.source, start, end)

    def restore(self, text: str) -> str:
        """`text` with every placeholder in it put back to the base64 text it replaced."""
        if self.nonce not in text:
            return text

        def back(match: re.Match[str]) -> str:
            index = int(match.group(1))
            self.resolved.add(index)
            start, end = self.spans[index]
            return self.source[start:end].decode("ascii")

        return re.sub(rf"RNLIFTED{self.nonce}N(\d+)X", back, text)

    @property
    def complete(self) -> bool:
        return len(self.resolved) == len(self.spans)


class _Base64Reader(io.RawIOBase):
    """Decoded bytes of source[start:end] (base64 text with line breaks), a slice at a time."""

    def __init__(self, source: bytes, start: int, end: int) -> None:
        self._view = memoryview(source)
        self._pos, self._end = start, end
        self._carry = b""  # data characters of an unfinished group of four
        self._out = b""
        self._taken = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while self._taken >= len(self._out):
            if self._pos >= self._end:
                return 0
            stop = min(self._pos + STREAM_SLICE_BYTES, self._end)
            text = self._carry + bytes(self._view[self._pos:stop]).translate(None, b"\r\n")
            self._pos = stop
            whole = len(text) - len(text) % 4
            self._carry = text[whole:]
            self._out, self._taken = binascii.a2b_base64(text[:whole]), 0
        n = min(len(buffer), len(self._out) - self._taken)
        buffer[:n] = self._out[self._taken:self._taken + n]
        self._taken += n
        return n


def lift(raw: bytes, min_bytes: int = LIFT_MIN_BYTES, *,
         span: tuple[int, int] | None = None) -> tuple[bytes, LiftedParts | None]:
    """`raw` with large base64 attachment bodies replaced by placeholders, and the spans.

    With `span`, the message is raw[start:end] (a signed reply's signed part,
    inside the whole mail): the skeleton is made of that range only, and the
    lifted spans point into `raw` itself, so the range is never copied whole.
    """
    start, end = span or (0, len(raw))
    if end - start < min_bytes:
        return (raw if span is None else raw[start:end]), None
    lifted = LiftedParts(raw)
    pieces: list[bytes] = []
    kept_from = start
    pos = start
    while True:
        cte = _B64_CTE.search(raw, pos, end)
        if cte is None:
            break
        head_end = _HEAD_END.search(raw, cte.end(), end)
        if head_end is None:
            break
        body_start = head_end.end()
        boundary = raw.find(b"\n--", body_start - 1, end)
        body_end = boundary + 1 if boundary >= 0 else end
        pos = body_end
        if body_end - body_start < min_bytes:
            continue
        part_start = max(raw.rfind(b"\n--", start, cte.start()) + 1, start)
        if not _NAMED.search(raw, part_start, head_end.start()):
            continue
        if _BASE64_TEXT.fullmatch(raw, body_start, body_end) is None:
            continue
        # The line break before the boundary stays in the skeleton: it belongs
        # to the delimiter, and the placeholder then stands for exactly the text.
        text_end = body_end
        while text_end > body_start and raw[text_end - 1] in b"\r\n":
            text_end -= 1
        pieces.append(raw[kept_from:body_start])
        pieces.append(lifted.placeholder(len(lifted.spans)).encode("ascii"))
        lifted.spans.append((body_start, text_end))
        kept_from = text_end
    if not lifted.spans:
        return (raw if span is None else raw[start:end]), None
    pieces.append(raw[kept_from:end])
    return b"".join(pieces), lifted
