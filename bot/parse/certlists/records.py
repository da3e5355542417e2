"""The records a certificate list is read into, and the limits that bound reading it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.parse.mail.archives import (
    DEFAULT_ARCHIVE_LIMITS,
    ArchiveLimits,
)


@dataclass(frozen=True, slots=True)
class CertRecord:
    sha256: str | None  # lower hex, no colons, of the DER (None for rows without a certificate)
    serial: str | None  # lower hex, no leading zeros (canonical), no colons
    issuer: str | None  # RFC 4514 string
    subject: str | None
    dns_names: tuple[str, ...]  # SAN dNSName lower-cased; subject CN if no SAN; domain columns
    not_before: datetime | None  # UTC aware
    not_after: datetime | None
    precertificate: bool  # CT poison extension present
    crtsh_id: int | None
    line: int | None  # line in the (decompressed) file, header = line 1; None for binary formats
    source: str  # file name (member path inside archives: "list.zip/part1.csv")


# A CertRecord's fields as a plain tuple, in the same order: what the CSV fast
# path builds (a tuple costs ~0.01 µs, a frozen CertRecord ~1.2 µs) and what
# `iter_certificate_rows` yields to the bulk insert of a million-row list.
CertFields = tuple[
    str | None,  # sha256
    str | None,  # serial
    str | None,  # issuer
    str | None,  # subject
    tuple[str, ...],  # dns_names
    datetime | None,  # not_before
    datetime | None,  # not_after
    bool,  # precertificate
    int | None,  # crtsh_id
    int | None,  # line
    str,  # source
]


def _fields(record: CertRecord) -> CertFields:
    return (record.sha256, record.serial, record.issuer, record.subject, record.dns_names,
            record.not_before, record.not_after, record.precertificate, record.crtsh_id,
            record.line, record.source)


@dataclass(frozen=True, slots=True)
class RejectedLine:
    line: int | None
    text: str  # the offending input, truncated to 200 chars
    reason: str  # e.g. "serial 'zz12' is not hexadecimal"
    source: str


@dataclass(frozen=True, slots=True)
class ListSummary:
    count: int  # distinct certificates plus rows carrying only a serial, fingerprint or id
    unique_domains: int
    rejected: int
    first_rejections: tuple[RejectedLine, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ListLimits:
    archive: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS
    # One physical line. A CSV row naming a certificate with a thousand SANs
    # is ~40 KB; 256 KiB is generous for that and small enough that a
    # 10-million-column line is refused after reading one slice of it.
    max_line_chars: int = 262_144
    # The widest real exports (crt.sh, Censys) have a few dozen columns.
    max_columns: int = 256
    # One CSV field, multi-line PEM cells included. csv's own default is
    # 131,072; a single field cannot be longer than a line anyway, except a
    # quoted multi-line one, which this bounds.
    max_field_chars: int = 262_144
    # Base64 of one PEM block: the largest real certificates (thousands of
    # SANs) are < 200 KB of DER; a block with no END line stops here.
    max_pem_block_chars: int = 1 << 20
    # A DER/BER file (certificate, PKCS#7, CRL) is parsed whole: 64 MiB holds a
    # PKCS#7 of ~40,000 certificates.
    max_binary_bytes: int = 64 << 20


DEFAULT_LIMITS = ListLimits()

TEXT_LIMIT = 200  # characters of offending input kept in a RejectedLine


Item = CertRecord | RejectedLine
# What the readers (certlists_der, certlists_csv) yield: the CSV fast path's
# tuples are turned into CertRecords, or the other way round, only by the
# public entries in certlists.
AnyItem = CertRecord | CertFields | RejectedLine


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def _show(value: str) -> str:
    """A value quoted inside a reason, short enough to read."""
    return repr(value if len(value) <= 40 else value[:39] + "…")
