"""Open gzip and zip attachments as streams of decompressed members, within named limits.

A certificate list may arrive compressed, and a compressed attachment is the
cheapest way to make a parser allocate gigabytes (1 GB of zeros gzips to about
1 MB). Nothing here decompresses a whole member up front: each member is
handed out as a buffered stream that inflates on demand and counts what it
produces, so a limit trips while reading, after the records already read from
the member have been handed on. Passing a limit raises
`bot.errors.LimitExceeded`; anything that is merely broken (bad CRC, truncated
stream, encrypted member) raises `ArchiveCorrupt`, which the list parser turns
into a rejected line.

Members are recognised by their magic bytes, not by their names: a `.csv` that
is really gzip is opened as gzip, and a `.gz` that is really text is read as
text.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from bot.errors import LimitExceeded, RootnotifyError

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty archive

# What one read of the inflater asks for; also the size of the peek window the
# list parser uses to recognise a format.
CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    # 1 GiB of decompressed text per attachment. The largest certificate
    # incident so far (Let's Encrypt's CAA re-check bug, 2020: 3,048,289
    # certificates) fits in ~300 MB as a serial-plus-domain CSV; 1 GiB leaves
    # room for a PEM dump of ~500,000 certificates while keeping one hostile
    # attachment below a minute of parsing.
    max_decompressed_bytes: int = 1 << 30
    # Text lists compress 5–20:1 and even very repetitive CSVs stay far below
    # 100:1; DEFLATE tops out near 1032:1, which is what bombs use. 200:1
    # separates the two with margin on both sides.
    max_ratio: float = 200.0
    # Tiny inputs have meaningless ratios (a 100-byte gzip of a 30 KB header
    # line is fine); the ratio is only enforced past this much output.
    ratio_grace_bytes: int = 1 << 20
    # A CA splitting a list into parts makes tens of files, not thousands; the
    # cap also bounds the central directory zipfile reads into memory.
    max_members: int = 1000
    # list.zip → part.csv.gz is depth 2; anything deeper is only useful to
    # multiply a bomb's ratio layer by layer.
    max_depth: int = 2
    # A zip inside a zip needs random access, so it is read into memory; this
    # is the most that may cost.
    max_nested_zip_bytes: int = 64 << 20


DEFAULT_ARCHIVE_LIMITS = ArchiveLimits()


class ArchiveCorrupt(RootnotifyError):
    """Compressed input that cannot be read (truncated, bad CRC, encrypted, unsupported)."""


def is_compressed(data: bytes) -> bool:
    """True when `data` starts like a gzip stream or a zip archive."""
    return data.startswith(GZIP_MAGIC) or data.startswith(ZIP_MAGICS)


class _Budget:
    """The decompressed bytes still allowed for one attachment, shared by all its members."""

    __slots__ = ("limits", "used")

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.used = 0

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.limits.max_decompressed_bytes:
            raise LimitExceeded("decompressed size", self.used, self.limits.max_decompressed_bytes)


def _check_ratio(limits: ArchiveLimits, produced: int, consumed: int) -> None:
    if produced > limits.ratio_grace_bytes and produced > limits.max_ratio * max(consumed, 1):
        ratio = round(produced / max(consumed, 1))
        raise LimitExceeded("compression ratio", ratio, limits.max_ratio)


class _GzipInflater(io.RawIOBase):
    """Inflates a gzip stream (several concatenated members too) as it is read."""

    def __init__(self, source: BinaryIO, limits: ArchiveLimits) -> None:
        self._source = source
        self._limits = limits
        self._inflate = zlib.decompressobj(wbits=31)
        self._pending = b""  # compressed bytes read from the source, not yet inflated
        self._consumed = 0
        self._produced = 0
        self._source_done = False
        self._finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        want = len(buffer)
        if want == 0:
            return 0  # decompress(data, 0) would mean "no limit"
        while not self._finished:
            if not self._pending and not self._source_done:
                chunk = self._source.read(CHUNK)
                if not chunk:
                    self._source_done = True
                self._pending = chunk
            if not self._pending and self._source_done:
                if not self._inflate.eof:
                    raise ArchiveCorrupt(
                        f"gzip stream ends early after {self._produced:,} decompressed bytes"
                    )
                self._finished = True
                break
            fed = self._pending
            try:
                out = self._inflate.decompress(fed, want)
            except zlib.error as exc:
                raise ArchiveCorrupt(f"gzip data is corrupt: {exc}") from None
            # max_length leaves unread input in unconsumed_tail; unused_data is
            # what follows the end of this gzip member.
            self._pending = self._inflate.unconsumed_tail
            self._consumed += len(fed) - len(self._pending) - len(self._inflate.unused_data)
            if self._inflate.eof:
                self._next_member()
            if out:
                self._produced += len(out)
                _check_ratio(self._limits, self._produced, self._consumed)
                buffer[: len(out)] = out
                return len(out)
        return 0

    def _next_member(self) -> None:
        rest = self._inflate.unused_data
        if not rest and not self._source_done:
            rest = self._source.read(CHUNK)
            if not rest:
                self._source_done = True
        if rest.startswith(GZIP_MAGIC) or (rest == b"\x1f" and not self._source_done):
            self._inflate = zlib.decompressobj(wbits=31)
            self._pending = rest
        elif rest.strip(b"\x00"):
            raise ArchiveCorrupt("unexpected data after the end of the gzip stream")
        else:
            # gzip (the tool) pads tapes with zeros; tolerated like gzip -d does.
            self._pending = b""
            self._finished = self._source_done or not self._drain_zeros()

    def _drain_zeros(self) -> bool:
        """Skip trailing zero padding; True when a further gzip member follows it."""
        while True:
            chunk = self._source.read(CHUNK)
            if not chunk:
                self._source_done = True
                return False
            if chunk.strip(b"\x00"):
                raise ArchiveCorrupt("unexpected data after the end of the gzip stream")


class _Metered(io.RawIOBase):
    """Checks a member's output against the ratio limit and, when given, the shared budget."""

    def __init__(
        self,
        inner: BinaryIO,
        limits: ArchiveLimits,
        budget: _Budget | None,
        compressed_size: int | None = None,
    ) -> None:
        self._inner = inner
        self._limits = limits
        # Only the innermost stream (what the parser reads) spends the budget,
        # so a gzip inside a zip is not counted twice.
        self._budget = budget
        self._compressed = compressed_size
        self._produced = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(buffer))
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ArchiveCorrupt(f"compressed member is corrupt: {exc}") from None
        except (RuntimeError, NotImplementedError) as exc:  # encrypted, unsupported method
            raise ArchiveCorrupt(f"cannot read member: {exc}") from None
        n = len(data)
        if n:
            self._produced += n
            if self._budget is not None:
                self._budget.spend(n)
            if self._compressed is not None:
                # A zip member cannot consume more than its compressed size.
                _check_ratio(self._limits, self._produced, self._compressed)
            buffer[:n] = data
        return n


def _buffered(raw: io.RawIOBase) -> io.BufferedReader:
    return io.BufferedReader(raw, buffer_size=CHUNK)


def _zip_entry_count(data: bytes) -> int | None:
    """Entries declared by the end-of-central-directory record, read before zipfile builds them."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if at < 0 or at + 22 > len(data):
        return None
    (total,) = struct.unpack_from("<H", data, at + 10)
    if total != 0xFFFF:
        return total
    # ZIP64: the locator just before the EOCD points at the ZIP64 EOCD record.
    loc = at - 20
    if loc < 0 or data[loc : loc + 4] != b"PK\x06\x07":
        return None
    (offset,) = struct.unpack_from("<Q", data, loc + 8)
    if offset + 40 > len(data) or data[offset : offset + 4] != b"PK\x06\x06":
        return None
    (total64,) = struct.unpack_from("<Q", data, offset + 32)
    return int(total64)


def iter_members(
    filename: str, data: bytes | BinaryIO, limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS
) -> Iterator[tuple[str, io.BufferedReader]]:
    """Yield `(source name, stream)` for each readable member of `data` (bytes or a stream).

    Uncompressed data is one member named `filename`. A gzip file is one
    member named `filename`; a zip yields each file as `filename/member`.
    Finish with a stream before asking for the next one. Raises
    `LimitExceeded` when a limit is passed and `ArchiveCorrupt` when the
    container itself cannot be opened.
    """
    budget = _Budget(limits)
    if isinstance(data, bytes):
        yield from _open(filename, io.BytesIO(data), data, budget, depth=0)
    else:
        yield from _open(filename, data, None, budget, depth=0)


def _open(
    name: str,
    stream: BinaryIO,
    data: bytes | None,
    budget: _Budget,
    depth: int,
) -> Iterator[tuple[str, io.BufferedReader]]:
    limits = budget.limits
    buffered = stream if isinstance(stream, io.BufferedReader) else _buffered(stream)  # type: ignore[arg-type]
    head = buffered.peek(4)[:4]
    if head.startswith(GZIP_MAGIC):
        if depth + 1 > limits.max_depth:
            raise LimitExceeded("archive nesting depth", depth + 1, limits.max_depth)
        inflated = _buffered(_GzipInflater(buffered, limits))
        yield from _open(name, inflated, None, budget, depth + 1)
        return
    if head.startswith(ZIP_MAGICS):
        if depth + 1 > limits.max_depth:
            raise LimitExceeded("archive nesting depth", depth + 1, limits.max_depth)
        if data is None:
            # A zip is read whole (its directory is at the end); one given as
            # a stream at the top is bounded by the message size, as bytes are.
            data = _read_nested(buffered, limits) if depth else buffered.read()
        yield from _open_zip(name, data, budget, depth + 1)
        return
    if depth == 0:
        # Plain input: nothing was decompressed, so nothing to meter.
        yield name, buffered
    else:
        yield name, _buffered(_Metered(buffered, limits, budget))


def _read_nested(stream: BinaryIO, limits: ArchiveLimits) -> bytes:
    try:
        data = stream.read(limits.max_nested_zip_bytes + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ArchiveCorrupt(f"compressed member is corrupt: {exc}") from None
    if len(data) > limits.max_nested_zip_bytes:
        raise LimitExceeded("nested zip size", len(data), limits.max_nested_zip_bytes)
    return data


def _open_zip(
    name: str, data: bytes, budget: _Budget, depth: int
) -> Iterator[tuple[str, io.BufferedReader]]:
    limits = budget.limits
    declared = _zip_entry_count(data)
    if declared is not None and declared > limits.max_members:
        raise LimitExceeded("zip members", declared, limits.max_members)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise ArchiveCorrupt(f"{name}: not a readable zip archive: {exc}") from None
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        if len(infos) > limits.max_members:
            raise LimitExceeded("zip members", len(infos), limits.max_members)
        for info in infos:
            member_name = f"{name}/{info.filename}"
            if info.flag_bits & 0x1:
                raise ArchiveCorrupt(f"{member_name}: member is encrypted")
            if info.file_size > limits.max_decompressed_bytes:
                # Declared sizes can lie low but not usefully high: refuse early.
                raise LimitExceeded(
                    "decompressed size", info.file_size, limits.max_decompressed_bytes
                )
            try:
                member = archive.open(info)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError) as exc:
                raise ArchiveCorrupt(f"{member_name}: cannot open member: {exc}") from None
            with member:
                try:
                    head = member.peek(4)[:4]
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    raise ArchiveCorrupt(f"{member_name}: member is corrupt: {exc}") from None
                if head.startswith(GZIP_MAGIC) or head.startswith(ZIP_MAGICS):
                    ratio_only = _Metered(member, limits, None, info.compress_size)  # type: ignore[arg-type]
                    yield from _open(member_name, _buffered(ratio_only), None, budget, depth)
                else:
                    metered = _Metered(member, limits, budget, info.compress_size)  # type: ignore[arg-type]
                    yield member_name, _buffered(metered)
