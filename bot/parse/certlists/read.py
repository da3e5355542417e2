"""Turn an attached certificate list (bytes) into a stream of typed certificate records.

Accepted: PEM bundles (text between blocks is ignored, RFC 7468 §2), a DER
certificate (or several concatenated), PKCS#7 certs-only in DER, BER or PEM,
a DER or PEM CRL (its revoked serials), CSV with or without a header
(comma, semicolon or tab), and plain lines of serials, SHA-256 fingerprints
or crt.sh URLs — any of them gzip- or zip-compressed (see `archives`).

Every input line that cannot be read becomes a `RejectedLine` with its line
number and the reason; nothing is dropped silently and one bad line never
fails the list. The only exception that escapes is `LimitExceeded` (hostile
size or ratio), after which the records already yielded stay valid.

Everything streams: rows are read from a text wrapper over the decompressing
stream, one at a time, so memory stays flat whatever the list's length.

The readers live beside this module, one job each: `certlists_records`
(the records and limits), `certlists_der` (DER, PEM, PKCS#7 and CRL
input), `certlists_csv` (CSV and plain-text rows), `certlists_lines` (the
length-bounded line reader both text readers use). This module dispatches
to them and holds the public entries.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from bot.errors import LimitExceeded
from bot.parse.certlists.der import (
    _PEM_BEGIN_RE,
    _CertReader,
    _iter_der,
    _iter_pem,
)
from bot.parse.certlists.lines import _Lines
from bot.parse.certlists.records import (
    DEFAULT_LIMITS,
    AnyItem,
    CertFields,
    CertRecord,
    ListLimits,
    ListSummary,
    RejectedLine,
    _clip,
    _fields,
)
from bot.parse.certlists.textrows import (
    _IDENTIFYING,
    _choose_delimiter,
    _column_kind,
    _iter_rows,
    _RowParser,
)
from bot.parse.mail.archives import (
    CHUNK,
    ArchiveCorrupt,
    is_compressed,
    iter_members,
)

__all__ = [
    "DEFAULT_LIMITS",
    "CertFields",
    "CertRecord",
    "ListLimits",
    "ListSummary",
    "RejectedLine",
    "count_summary",
    "iter_certificate_list",
    "iter_certificate_rows",
    "looks_like_certificate_list",
]

FIRST_REJECTIONS = 10


# ---------------------------------------------------------------- dispatch


def _text_encoding(head: bytes) -> str:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"  # Excel's "Unicode text" export
    return "utf-8-sig"


def _is_der(head: bytes) -> bool:
    # A SEQUENCE with a long-form or indefinite length: text never has a byte
    # 0x80–0x84 right after "0", and no certificate fits a short form.
    return len(head) >= 2 and head[0] == 0x30 and 0x80 <= head[1] <= 0x84


def _iter_stream(
    source: str, stream: io.BufferedReader, limits: ListLimits, reader: _CertReader
) -> Iterator[AnyItem]:
    head = stream.peek(CHUNK)[:CHUNK]
    if _is_der(head):
        data = stream.read(limits.max_binary_bytes + 1)
        if len(data) > limits.max_binary_bytes:
            raise LimitExceeded("binary certificate file size", len(data), limits.max_binary_bytes)
        yield from _iter_der(data, source, reader)
        return
    encoding = _text_encoding(head)
    text = io.TextIOWrapper(stream, encoding=encoding, errors="replace", newline="")
    head_text = head.decode(encoding if encoding != "utf-8-sig" else "utf-8-sig", "replace")
    lines = _Lines(text, limits.max_line_chars)
    lines.source = source
    if _PEM_BEGIN_RE.search(head_text) and not _header_first(head_text):
        yield from _iter_pem(lines, source, limits, reader)
    else:
        yield from _iter_rows(lines, head_text, source, limits, reader)


def _header_first(head_text: str) -> bool:
    """True when the first meaningful line is a CSV header (a PEM column, then)."""
    for line in head_text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            cells = re.split(r"[,;\t]", line)
            return any(_column_kind(c) is not None for c in cells)
    return False


def iter_certificate_list(
    filename: str, data: bytes | BinaryIO, *, limits: ListLimits = DEFAULT_LIMITS
) -> Iterator[CertRecord | RejectedLine]:
    """Yield a record per certificate or row and a `RejectedLine` per unreadable line.

    Raises only `LimitExceeded`; what was yielded before it stays valid.
    """
    for item in _iter_items(filename, data, limits):
        yield CertRecord(*item) if type(item) is tuple else item  # type: ignore[misc]


def iter_certificate_rows(
    filename: str, data: bytes | BinaryIO, *, limits: ListLimits = DEFAULT_LIMITS
) -> Iterator[CertFields | RejectedLine]:
    """As `iter_certificate_list`, each record as its CertFields tuple: for bulk inserts.

    A million-row CSV list then builds no CertRecord at all (~1.2 µs a row).
    """
    for item in _iter_items(filename, data, limits):
        yield _fields(item) if type(item) is CertRecord else item  # type: ignore[misc,arg-type]


def _iter_items(filename: str, data: bytes | BinaryIO, limits: ListLimits
                ) -> Iterator[AnyItem]:
    reader = _CertReader()
    members = iter_members(filename, data, limits.archive)
    while True:
        try:
            source, stream = next(members)
        except StopIteration:
            return
        except ArchiveCorrupt as exc:
            yield RejectedLine(None, _clip(filename), str(exc), filename)
            return
        try:
            yield from _iter_stream(source, stream, limits, reader)
        except ArchiveCorrupt as exc:
            yield RejectedLine(None, _clip(source), str(exc), source)
        except LimitExceeded:
            raise
        except Exception as exc:
            # A CA's list must never be lost to a bug here: the failure is
            # recorded like any unreadable input, for a person to look at.
            yield RejectedLine(
                None, _clip(source), f"internal error reading the list: {exc!r}", source
            )


# ---------------------------------------------------------------- sniffing and summary

_LIST_EXTENSIONS = (
    ".pem",
    ".crt",
    ".cer",
    ".der",
    ".p7b",
    ".p7c",
    ".csv",
    ".tsv",
    ".txt",
    ".gz",
    ".tgz",
    ".zip",
    ".list",
    ".crl",
)
_LIST_CONTENT_TYPES = frozenset(
    {
        "application/pkix-cert",
        "application/x-x509-ca-cert",
        "application/x-x509-user-cert",
        "application/x-pem-file",
        "application/pkcs7-mime",
        "application/x-pkcs7-certificates",
        "application/pkcs7-certificates",
        "text/csv",
        "text/tab-separated-values",
        "application/csv",
        "application/gzip",
        "application/x-gzip",
        "application/zip",
        "application/x-zip-compressed",
        "application/vnd.ms-excel",
        "application/pkix-crl",
    }
)
_NOT_LISTS = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature"})


def looks_like_certificate_list(filename: str, content_type: str,
                                data: bytes | io.BufferedReader) -> bool:
    """Whether an attachment is a certificate list: by its name or type, then its content.

    Compressed attachments are judged by their first members, so a .docx
    (a zip of XML) is not taken for a list. `data` may be a stream (read
    from, not closed).
    """
    name = filename.lower()
    ctype, _, params = content_type.lower().partition(";")
    ctype = ctype.strip()
    if ctype in _NOT_LISTS or name.endswith((".p7s", ".p7m")):
        return False  # S/MIME signatures and messages carry certificates but are not lists
    if "smime-type" in params and "certs-only" not in params:
        return False
    named = name.endswith(_LIST_EXTENSIONS) or ctype in _LIST_CONTENT_TYPES
    head = data[:CHUNK] if isinstance(data, bytes) else data.peek(CHUNK)[:CHUNK]
    if not is_compressed(head):
        return _head_looks_like(named, ctype, head)
    try:
        for seen, (member, stream) in enumerate(iter_members(filename, data)):
            member_named = member.lower().endswith(_LIST_EXTENSIONS)
            if _head_looks_like(member_named, "", stream.peek(CHUNK)[:CHUNK]):
                return True
            if seen >= 4:
                break
    except (ArchiveCorrupt, LimitExceeded):
        return named  # let the parser report what is wrong with it
    return False


def _head_looks_like(named: bool, ctype: str, head: bytes) -> bool:
    if not head.strip():
        return False
    if _is_der(head):
        return named
    text = head.decode(_text_encoding(head), "replace")
    if "-----BEGIN " in text:
        return bool(_PEM_LIST_RE.search(text))
    lines = [ln for ln in text.splitlines()[:40] if ln.strip() and not ln.lstrip().startswith("#")]
    lines = lines[:20]
    if not lines:
        return False
    if any(_column_kind(c) in _IDENTIFYING for c in re.split(r"[,;\t]", lines[0])):
        return True
    if not (named or ctype.startswith("text/")):
        return False
    parser = _RowParser(None, "", _CertReader())
    delimiter = _choose_delimiter(lines)
    good = 0
    try:
        rows = list(csv.reader(lines, delimiter=delimiter))
    except csv.Error:
        return False
    for number, row in enumerate(rows, 1):
        if not isinstance(parser.parse(row, number, delimiter), RejectedLine):
            good += 1
    return good * 2 > len(lines)


_PEM_LIST_RE = re.compile(r"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----|-----BEGIN PKCS7-----")


def _key(item: CertRecord) -> object:
    if item.sha256 is not None:
        return item.sha256
    if item.crtsh_id is not None:
        return ("crt.sh", item.crtsh_id)
    return ("serial", (item.issuer or "").lower(), item.serial)


def count_summary(items: Iterable[CertRecord | RejectedLine]) -> ListSummary:
    """Count distinct certificates, distinct domains and rejected lines of a parsed list.

    Distinct keys are kept as 64-bit hashes, not strings, so a list of
    millions of rows costs tens of MB here rather than hundreds; the chance
    of two keys colliding in ten million is about 3 in a million.
    """
    certificates: set[int] = set()
    domains: set[int] = set()
    rejected = 0
    first: list[RejectedLine] = []
    for item in items:
        if isinstance(item, RejectedLine):
            rejected += 1
            if len(first) < FIRST_REJECTIONS:
                first.append(item)
            continue
        certificates.add(hash(_key(item)))
        for name in item.dns_names:
            domains.add(hash(name))
    return ListSummary(len(certificates), len(domains), rejected, tuple(first))
