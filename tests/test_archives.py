"""Compressed attachments open as streams and stop at their named limits, bombs included."""

from __future__ import annotations

import gzip
import io
import tracemalloc
import zipfile
import zlib
from functools import cache

import pytest

from bot.errors import LimitExceeded
from bot.parse.mail.archives import (
    DEFAULT_ARCHIVE_LIMITS,
    ArchiveCorrupt,
    ArchiveLimits,
    is_compressed,
    iter_members,
)


def read_all(
    name: str, data: bytes, limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS
) -> dict[str, bytes]:
    return {member: stream.read() for member, stream in iter_members(name, data, limits)}


def drain(name: str, data: bytes, limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS) -> int:
    """Read everything in 64 KiB slices, as the parser does; the bytes seen."""
    total = 0
    for _, stream in iter_members(name, data, limits):
        while chunk := stream.read(1 << 16):
            total += len(chunk)
    return total


@cache
def gigabyte_of_zeros_gz() -> bytes:
    """1 GiB of zeros, gzip-compressed by streaming (~1 MB), never built in memory."""
    buf = io.BytesIO()
    block = bytes(1 << 20)
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6) as gz:
        for _ in range(1024):
            gz.write(block)
    return buf.getvalue()


def zipped(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def test_plain_data_is_one_member_named_like_the_file() -> None:
    assert read_all("list.csv", b"a,b\n") == {"list.csv": b"a,b\n"}
    assert not is_compressed(b"a,b\n")


def test_gzip_including_concatenated_members() -> None:
    data = gzip.compress(b"one\n") + gzip.compress(b"two\n")
    assert is_compressed(data)
    assert read_all("l.csv.gz", data) == {"l.csv.gz": b"one\ntwo\n"}


def test_gzip_zero_padding_is_tolerated_but_trailing_garbage_is_not() -> None:
    assert read_all("p.gz", gzip.compress(b"x\n") + bytes(100)) == {"p.gz": b"x\n"}
    with pytest.raises(ArchiveCorrupt, match="after the end"):
        read_all("g.gz", gzip.compress(b"x\n") + b"garbage")


def test_truncated_and_corrupt_gzip() -> None:
    data = gzip.compress(bytes(range(256)) * 100)
    with pytest.raises(ArchiveCorrupt, match="ends early"):
        read_all("t.gz", data[:-30])
    with pytest.raises(ArchiveCorrupt, match="corrupt"):
        read_all("c.gz", data[:10] + b"\xff" * 50 + data[60:])


def test_zip_members_including_gzip_members_and_directories() -> None:
    data = zipped({"a.csv": b"1\n", "dir/": b"", "dir/b.csv.gz": gzip.compress(b"2\n")})
    assert read_all("l.zip", data) == {"l.zip/a.csv": b"1\n", "l.zip/dir/b.csv.gz": b"2\n"}


def test_gigabyte_gzip_bomb_stops_on_ratio_quickly_in_little_memory() -> None:
    bomb = gigabyte_of_zeros_gz()
    assert len(bomb) < 2 << 20
    seen: list[int] = []
    tracemalloc.start()
    with pytest.raises(LimitExceeded) as info:
        for _, stream in iter_members("bomb.csv.gz", bomb, DEFAULT_ARCHIVE_LIMITS):
            while chunk := stream.read(1 << 16):
                seen.append(len(chunk))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert info.value.limit == "compression ratio"
    assert info.value.maximum == 200
    assert info.value.value > 200
    # Quickly, counted in work rather than in seconds on a shared machine: it stops
    # at the 1 MiB grace, not after inflating any of the rest of the gigabyte.
    assert sum(seen) <= 1 << 20
    assert peak < 8 << 20


def test_zip_bomb_stops_on_ratio() -> None:
    data = zipped({"zeros.csv": bytes(20 << 20)})
    with pytest.raises(LimitExceeded) as info:
        drain("bomb.zip", data)
    assert info.value.limit == "compression ratio"


def test_zip_member_that_is_a_gzip_bomb() -> None:
    inner = gzip.compress(bytes(20 << 20))
    data = zipped({"part.csv.gz": inner}, zipfile.ZIP_STORED)
    with pytest.raises(LimitExceeded) as info:
        drain("l.zip", data)
    assert info.value.limit == "compression ratio"


def test_small_highly_compressible_input_passes_within_grace() -> None:
    assert drain("ok.gz", gzip.compress(bytes(500_000))) == 500_000


def test_decompressed_size_is_counted_across_members() -> None:
    limits = ArchiveLimits(max_decompressed_bytes=250_000, max_ratio=1e9)
    data = zipped({f"p{i}.csv": bytes(100_000) for i in range(3)})
    with pytest.raises(LimitExceeded) as info:
        drain("l.zip", data, limits)
    assert (info.value.limit, info.value.maximum) == ("decompressed size", 250_000)
    assert info.value.value > 250_000


def test_member_count_limit() -> None:
    data = zipped({f"p{i}.csv": b"x" for i in range(1001)}, zipfile.ZIP_STORED)
    with pytest.raises(LimitExceeded) as info:
        drain("many.zip", data)
    assert (info.value.limit, info.value.value, info.value.maximum) == ("zip members", 1001, 1000)
    assert drain("ok.zip", zipped({f"p{i}.csv": b"x" for i in range(1000)})) == 1000


def test_nesting_depth_two_is_allowed_three_is_not() -> None:
    twice = gzip.compress(gzip.compress(b"x\n"))
    assert read_all("l.csv.gz.gz", twice) == {"l.csv.gz.gz": b"x\n"}
    with pytest.raises(LimitExceeded) as info:
        read_all("l.gz.gz.gz", gzip.compress(twice))
    assert (info.value.limit, info.value.value, info.value.maximum) == (
        "archive nesting depth",
        3,
        2,
    )
    inner_zip = zipped({"a.csv": b"1\n"})
    assert read_all("o.zip", zipped({"in.zip": inner_zip})) == {"o.zip/in.zip/a.csv": b"1\n"}
    with pytest.raises(LimitExceeded, match="nesting depth"):
        read_all("o.zip", zipped({"in.zip": zipped({"a.gz": gzip.compress(b"1")})}))


def test_encrypted_and_broken_zips() -> None:
    # zipfile cannot encrypt, so set the "encrypted" flag bit in both headers.
    data = bytearray(zipped({"secret.csv": b"x"}, zipfile.ZIP_STORED))
    data[6] |= 0x1
    data[data.find(b"PK\x01\x02") + 8] |= 0x1
    with pytest.raises(ArchiveCorrupt, match="encrypted"):
        read_all("e.zip", bytes(data))
    with pytest.raises(ArchiveCorrupt, match="not a readable zip"):
        read_all("b.zip", b"PK\x03\x04" + bytes(50))


def test_corrupt_deflate_inside_zip() -> None:
    payload = zlib.compress(bytes(range(256)) * 400)
    data = bytearray(zipped({"a.csv": bytes(range(256)) * 400}))
    start = data.find(payload[2:40])
    assert start > 0
    data[start + 10 : start + 30] = b"\xff" * 20
    with pytest.raises(ArchiveCorrupt):
        drain("c.zip", bytes(data))
