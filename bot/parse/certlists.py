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

Speed: cryptography parses a certificate in ~1.3 µs but building a `Name`
costs ~12 µs and its RFC 4514 string ~16 µs (measured here, cryptography 50).
A list has few issuers, so the issuer string is cached by the issuer's DER
bytes, which a small DER walker slices out of the TBSCertificate along with
the serial, subject and extensions (SAN, CT poison) without building Python
objects for them. The SHA-256 is hashlib over the DER we already hold
(0.6 µs against 6 µs for `Certificate.fingerprint`).
"""

from __future__ import annotations

import binascii
import csv
import hashlib
import io
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from bot.errors import LimitExceeded
from bot.parse.archives import (
    CHUNK,
    DEFAULT_ARCHIVE_LIMITS,
    ArchiveCorrupt,
    ArchiveLimits,
    is_compressed,
    iter_members,
)

# ---------------------------------------------------------------- records


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
# Distinct-name caches are per list; past this size they are dropped and
# restarted so a list of unique subjects cannot grow them without bound.
NAME_CACHE_SIZE = 4096
# RFC 5280 caps serials at 20 octets; some non-conforming CAs used 21+.
# Beyond 32 octets it is not a serial anyone issued (a fingerprint, more likely).
MAX_SERIAL_HEX_DIGITS = 64
MAX_DECIMAL_SERIAL_DIGITS = 78  # 2**256 has 78 decimal digits
FIRST_REJECTIONS = 10

_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_SERIAL_SEPARATORS = str.maketrans("", "", ": \t")
_DOMAIN_RE = re.compile(
    r"(?:\*\.)?(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?\.)+[a-z0-9-]*[a-z][a-z0-9-]*\.?"
)
_DOMAIN_SPLIT_RE = re.compile(r"[\s,;|\[\]{}\"']+")
# The separators of _DOMAIN_SPLIT_RE other than white space: without them a
# cell splits with str.split(), which splits on the same white space (both
# use Python's str.isspace) three times faster than the regex.
_DOMAIN_PUNCT_RE = re.compile(r"[,;|\[\]{}\"']")
_PEM_BEGIN_RE = re.compile(r"^-----BEGIN ([A-Z0-9 #]+)-----", re.MULTILINE)

_CERT_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"})
_PKCS7_LABELS = frozenset({"PKCS7", "PKCS #7 SIGNED DATA", "CMS", "CERTIFICATE CHAIN"})
_CRL_LABELS = frozenset({"X509 CRL"})

# DER content bytes of the OIDs looked up by the walker.
_OID_SAN = bytes.fromhex("551d11")  # 2.5.29.17
_OID_CT_POISON = bytes.fromhex("2b06010401d679020403")  # 1.3.6.1.4.1.11129.2.4.3
_OID_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")  # 1.2.840.113549.1.7.2, with tag


Item = CertRecord | RejectedLine
# What the readers yield inside this module: the CSV fast path's tuples are
# turned into CertRecords (or the other way round) only by the public entries.
AnyItem = CertRecord | CertFields | RejectedLine


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def _show(value: str) -> str:
    """A value quoted inside a reason, short enough to read."""
    return repr(value if len(value) <= 40 else value[:39] + "…")


# ---------------------------------------------------------------- DER walking


def _tlv(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the DER element at `pos`."""
    tag = buf[pos]
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        octets = length & 0x7F
        if octets == 0 or octets > 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(buf[pos : pos + octets], "big")
        pos += octets
    end = pos + length
    if end > len(buf):
        raise ValueError("DER element runs past the end")
    return tag, pos, end


def _walk_tbs(der: bytes) -> tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]]:
    """Serial content, issuer TLV, subject TLV and (oid, value) extensions of a DER certificate."""
    _, cert_start, _ = _tlv(der, 0)
    _, pos, tbs_end = _tlv(der, cert_start)
    tag, start, end = _tlv(der, pos)
    if tag == 0xA0:  # [0] version
        tag, start, end = _tlv(der, end)
    if tag != 0x02:
        raise ValueError("no serial INTEGER")
    serial = der[start:end]
    _, _, pos = _tlv(der, end)  # signature AlgorithmIdentifier
    _, _, issuer_end = _tlv(der, pos)
    issuer = der[pos:issuer_end]
    _, _, pos = _tlv(der, issuer_end)  # validity
    _, _, subject_end = _tlv(der, pos)
    subject = der[pos:subject_end]
    _, _, pos = _tlv(der, subject_end)  # subjectPublicKeyInfo
    extensions: list[tuple[bytes, bytes]] = []
    while pos < tbs_end:
        tag, start, end = _tlv(der, pos)
        pos = end
        if tag != 0xA3:
            continue  # issuerUniqueID / subjectUniqueID
        _, ext_pos, ext_end = _tlv(der, start)  # SEQUENCE OF Extension
        while ext_pos < ext_end:
            _, p, e_end = _tlv(der, ext_pos)
            ext_pos = e_end
            _, oid_start, p = _tlv(der, p)
            oid = der[oid_start:p]
            tag, v_start, v_end = _tlv(der, p)
            if tag == 0x01:  # critical BOOLEAN
                tag, v_start, v_end = _tlv(der, v_end)
            extensions.append((oid, der[v_start:v_end]))
    return serial, issuer, subject, extensions


def _serial_not_positive(der: bytes) -> bool:
    """Whether the serial INTEGER is negative or zero (or the walk fails: be careful then)."""
    try:
        _, pos, _ = _tlv(der, 0)
        _, pos, _ = _tlv(der, pos)
        tag, start, end = _tlv(der, pos)
        if tag == 0xA0:
            tag, start, end = _tlv(der, end)
        return tag != 0x02 or der[start] & 0x80 != 0 or not any(der[start:end])
    except (ValueError, IndexError):
        return True


def _san_dns_names(value: bytes) -> tuple[str, ...]:
    """dNSName entries of a GeneralNames value, lower-cased, wildcards kept."""
    _, pos, end = _tlv(value, 0)
    names: list[str] = []
    while pos < end:
        tag, start, pos = _tlv(value, pos)
        if tag == 0x82:  # [2] IMPLICIT IA5String
            names.append(value[start:pos].decode("ascii", "replace").strip().lower())
    return tuple(names)


def _serial_from_content(content: bytes) -> str:
    # The raw octets, as crt.sh and CA tooling print them; a negative
    # (non-conforming) serial keeps its two's-complement octets.
    return content.hex().lstrip("0") or "0"


class _CertReader:
    """Certificate DER → CertRecord, with the per-list name caches."""

    def __init__(self) -> None:
        self._issuers: dict[bytes, str | None] = {}
        self._subjects: dict[bytes, str | None] = {}

    def _name(
        self, cache: dict[bytes, str | None], key: bytes, get: Callable[[], x509.Name]
    ) -> str | None:
        try:
            return cache[key]
        except KeyError:
            pass
        if len(cache) >= NAME_CACHE_SIZE:
            cache.clear()
        try:
            text: str | None = get().rfc4514_string()
        except ValueError:
            # e.g. a CN that is not valid UTF-8: the certificate still counts.
            text = None
        cache[key] = text
        return text

    def record(
        self, der: bytes, line: int | None, source: str, crtsh_id: int | None = None
    ) -> Item:
        try:
            if _serial_not_positive(der):
                # Non-positive serials are a mis-issuance CAs report; cryptography
                # warns on them, and a warning must not stop the list.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                    cert = x509.load_der_x509_certificate(der)
            else:
                cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            return RejectedLine(
                line, _clip(der[:60].hex()), f"not a readable certificate: {exc}", source
            )
        sha256 = hashlib.sha256(der).hexdigest()
        try:
            serial_raw, issuer_der, subject_der, extensions = _walk_tbs(der)
            serial = _serial_from_content(serial_raw)
            dns: tuple[str, ...] | None = None
            precert = False
            for oid, value in extensions:
                if oid == _OID_SAN:
                    dns = _san_dns_names(value)
                elif oid == _OID_CT_POISON:
                    precert = True
        except (ValueError, IndexError):
            # cryptography accepted it, so it is DER; fall back to its API.
            return self._record_slow(cert, sha256, line, source, crtsh_id)
        issuer = self._name(self._issuers, issuer_der, lambda: cert.issuer)
        subject = self._name(self._subjects, subject_der, lambda: cert.subject)
        if dns is None:
            dns = _common_names(cert)
        return CertRecord(
            sha256,
            serial,
            issuer,
            subject,
            dns,
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            precert,
            crtsh_id,
            line,
            source,
        )

    def _record_slow(
        self,
        cert: x509.Certificate,
        sha256: str,
        line: int | None,
        source: str,
        crtsh_id: int | None,
    ) -> Item:
        dns: tuple[str, ...] | None = None
        precert = False
        try:
            for ext in cert.extensions:
                if isinstance(ext.value, x509.SubjectAlternativeName):
                    dns = tuple(n.lower() for n in ext.value.get_values_for_type(x509.DNSName))
                elif isinstance(ext.value, x509.PrecertPoison):
                    precert = True
        except ValueError:
            pass
        issuer = subject = None
        try:
            issuer = cert.issuer.rfc4514_string()
            subject = cert.subject.rfc4514_string()
        except ValueError:
            pass
        return CertRecord(
            sha256,
            format(cert.serial_number, "x").lstrip("-"),
            issuer,
            subject,
            dns if dns is not None else _common_names(cert),
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            precert,
            crtsh_id,
            line,
            source,
        )


def _common_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return ()
    return tuple(str(a.value).strip().lower() for a in attrs if str(a.value).strip())


# ---------------------------------------------------------------- binary formats


def _iter_pkcs7(der: bytes, line: int | None, source: str, reader: _CertReader) -> Iterator[Item]:
    """Certificates of a PKCS#7 SignedData (asn1crypto: it also reads BER indefinite length)."""
    from asn1crypto import cms  # imported here: only PKCS#7 input pays for it

    what = "PKCS#7 bundle"
    try:
        info = cms.ContentInfo.load(der, strict=False)
        if info["content_type"].native != "signed_data":
            yield RejectedLine(
                line,
                what,
                f"PKCS#7 content is {info['content_type'].native}, not signed data",
                source,
            )
            return
        certificates = info["content"]["certificates"]
        choices = list(certificates) if certificates.native is not None else []
    except Exception as exc:  # asn1crypto parses lazily and raises many types
        yield RejectedLine(line, what, f"not a readable PKCS#7 bundle: {exc}", source)
        return
    if not choices:
        yield RejectedLine(line, what, "PKCS#7 bundle holds no certificates", source)
        return
    for choice in choices:
        if choice.name != "certificate":
            yield RejectedLine(
                line, what, f"PKCS#7 entry is a {choice.name}, not a certificate", source
            )
            continue
        try:
            cert_der = choice.chosen.dump()
        except Exception as exc:
            yield RejectedLine(line, what, f"PKCS#7 certificate is unreadable: {exc}", source)
            continue
        yield reader.record(cert_der, line, source)


def _iter_crl(der: bytes, line: int | None, source: str) -> Iterator[Item]:
    """A CRL is a list of revoked serials under one issuer: one row each."""
    try:
        crl = x509.load_der_x509_crl(der)
        issuer: str | None
        try:
            issuer = crl.issuer.rfc4514_string()
        except ValueError:
            issuer = None
        for revoked in crl:
            serial = format(revoked.serial_number, "x").lstrip("-")
            yield CertRecord(None, serial, issuer, None, (), None, None, False, None, line, source)
    except ValueError as exc:
        yield RejectedLine(line, "CRL", f"not a readable CRL: {exc}", source)


def _iter_der(data: bytes, source: str, reader: _CertReader) -> Iterator[Item]:
    """One or more concatenated DER/BER objects: certificates, PKCS#7 bundles or CRLs."""
    if _OID_SIGNED_DATA in data[:32]:
        yield from _iter_pkcs7(data, None, source, reader)
        return
    pos = 0
    while pos < len(data):
        try:
            _, _, end = _tlv(data, pos)
        except (ValueError, IndexError):
            yield RejectedLine(
                None, _clip(data[pos : pos + 60].hex()), f"unreadable DER at byte {pos}", source
            )
            return
        element = data[pos:end]
        item = reader.record(element, None, source)
        if isinstance(item, RejectedLine):
            crl_items = list(_iter_crl(element, None, source))
            if crl_items and isinstance(crl_items[0], CertRecord):
                yield from crl_items
            elif not crl_items:
                pass  # a CRL revoking nothing
            else:
                yield RejectedLine(
                    None,
                    item.text,
                    f"byte {pos}: not a certificate, PKCS#7 bundle or CRL ({item.reason})",
                    source,
                )
        else:
            yield item
        pos = end


def _iter_pem_block(
    label: str, body: str, line: int, begin: str, source: str, reader: _CertReader
) -> Iterator[Item]:
    try:
        der = binascii.a2b_base64(body)
    except (binascii.Error, ValueError) as exc:
        yield RejectedLine(line, _clip(begin), f"PEM block is not valid base64: {exc}", source)
        return
    if label in _CERT_LABELS:
        if label == "TRUSTED CERTIFICATE":
            # OpenSSL appends its trust settings after the certificate.
            try:
                _, _, end = _tlv(der, 0)
                der = der[:end]
            except (ValueError, IndexError):
                pass
        item = reader.record(der, line, source)
        if isinstance(item, RejectedLine):
            item = RejectedLine(line, _clip(begin), item.reason, source)
        yield item
    elif label in _PKCS7_LABELS:
        yield from _iter_pkcs7(der, line, source, reader)
    elif label in _CRL_LABELS:
        yield from _iter_crl(der, line, source)
    else:
        yield RejectedLine(line, _clip(begin), f"PEM block {label!r} is not a certificate", source)


# ---------------------------------------------------------------- text input


class _Lines:
    """Physical lines of a text stream, each at most `max_chars` long.

    An over-long line is replaced by an empty one (so line numbers stay
    right) and noted in `overlong`; the rest of it is skipped a slice at a
    time, which is what keeps a 10-million-column line cheap.
    """

    def __init__(self, text: io.TextIOBase, max_chars: int) -> None:
        self._readline = text.readline
        self._max = max_chars
        self.number = 0
        self.overlong: list[RejectedLine] = []
        self.source = ""

    def __iter__(self) -> Iterator[str]:
        readline, limit = self._readline, self._max
        while True:
            line = readline(limit)
            if not line:
                return
            self.number += 1
            if len(line) == limit and line[-1] != "\n":
                skipped = len(line)
                while True:
                    rest = readline(limit)
                    skipped += len(rest)
                    if not rest or rest[-1] == "\n":
                        break
                self.overlong.append(
                    RejectedLine(
                        self.number,
                        _clip(line),
                        f"line is {skipped:,} characters long, more than {limit:,}",
                        self.source,
                    )
                )
                line = "\n"
            yield line


def _iter_pem(
    lines: _Lines, source: str, limits: ListLimits, reader: _CertReader
) -> Iterator[Item]:
    label: str | None = None
    begin = ""
    start = 0
    body: list[str] = []
    size = 0
    for raw in lines:
        if lines.overlong:
            yield from lines.overlong
            lines.overlong.clear()
        text = raw.strip()
        if label is None:
            if text.startswith("-----BEGIN ") and text.endswith("-----"):
                label, begin, start, body, size = text[11:-5].strip(), text, lines.number, [], 0
            continue  # text outside blocks is commentary (RFC 7468 §2)
        if text.startswith("-----END "):
            yield from _iter_pem_block(label, "".join(body), start, begin, source, reader)
            label = None
            continue
        if text.startswith("-----BEGIN "):
            yield RejectedLine(start, _clip(begin), "PEM block has no END line", source)
            label, begin, start, body, size = text[11:-5].strip(), text, lines.number, [], 0
            continue
        if ":" in text:
            continue  # RFC 1421 headers (Proc-Type, DEK-Info): never base64
        size += len(text)
        if size > limits.max_pem_block_chars:
            yield RejectedLine(
                start,
                _clip(begin),
                f"PEM block is longer than {limits.max_pem_block_chars:,} characters",
                source,
            )
            label = None
            continue
        body.append(text)
    yield from lines.overlong
    lines.overlong.clear()
    if label is not None:
        yield RejectedLine(start, _clip(begin), "PEM block has no END line", source)


# Column names, compared in lower case without spaces, punctuation or underscores.
_SERIAL_HEX, _SERIAL_DEC, _ISSUER, _SUBJECT, _SHA256, _CRTSH, _DOMAINS, _PEM = range(8)
_COLUMNS: dict[str, int] = {}
for _kind, _names in (
    (
        _SERIAL_HEX,
        "serial serial_number serialnumber serial_hex serial_number_hex "
        "certificate_serial cert_serial certificate_serial_number",
    ),
    (_SERIAL_DEC, "serial_decimal serial_dec serial_number_decimal decimal_serial"),
    (_ISSUER, "issuer issuer_dn issuer_name issuer_distinguished_name"),
    (_SUBJECT, "subject subject_dn subject_name"),
    (
        _SHA256,
        "sha256 sha_256 fingerprint sha256_fingerprint fingerprint_sha256 cert_sha256 "
        "certificate_sha256 sha256_hash sha256_fingerprint_hex",
    ),
    (_CRTSH, "crt_sh_id crtsh_id id crtsh crt_sh crt_sh_url crtsh_url crt_sh_link"),
    (
        _DOMAINS,
        "domains domain dns_names dns_name dnsnames san sans subject_alt_names "
        "subject_alternative_names subject_alt_name common_name cn names",
    ),
    (_PEM, "pem certificate cert certificate_pem cert_pem"),
):
    for _name in _names.split():
        # Keyed without underscores so "SHA-256 Fingerprint" finds sha256_fingerprint.
        _COLUMNS[_name.replace("_", "")] = _kind
_IDENTIFYING = frozenset({_SERIAL_HEX, _SERIAL_DEC, _SHA256, _CRTSH, _PEM})
_NORMALISE_RE = re.compile(r"[\s.\-/#()]+")


def _column_kind(cell: str) -> int | None:
    return _COLUMNS.get(_NORMALISE_RE.sub("", cell.strip().strip('"').lower()).replace("_", ""))


def _hex_serial(value: str) -> str:
    """Canonical serial from hex with optional 0x, colons and spaces; ValueError(reason) if not."""
    if len(value) <= MAX_SERIAL_HEX_DIGITS and _HEX_RE.fullmatch(value):
        return value.lstrip("0").lower() or "0"  # the common case, four times faster
    s = value.strip()
    if s[:2] in ("0x", "0X"):
        s = s[2:]
    s = s.translate(_SERIAL_SEPARATORS)
    if not s:
        raise ValueError(f"serial {_show(value)} is empty")
    if not _HEX_RE.fullmatch(s):
        raise ValueError(f"serial {_show(value)} is not hexadecimal")
    s = s.lstrip("0").lower() or "0"
    if len(s) > MAX_SERIAL_HEX_DIGITS:
        raise ValueError(f"serial {_show(value)} has more than {MAX_SERIAL_HEX_DIGITS} hex digits")
    return s


def _decimal_serial(value: str) -> str:
    s = value.strip()
    if not s.isascii() or not s.isdigit():
        raise ValueError(f"decimal serial {_show(value)} is not a decimal number")
    if len(s) > MAX_DECIMAL_SERIAL_DIGITS:
        raise ValueError(f"decimal serial {_show(value)} is too long")
    return format(int(s), "x")


def _sha256(value: str) -> str:
    s = value.strip().translate(_SERIAL_SEPARATORS).lower()
    if s.startswith("sha256:"):
        s = s[7:]
    if len(s) != 64 or not _HEX_RE.fullmatch(s):
        raise ValueError(f"fingerprint {_show(value)} is not 64 hexadecimal digits (SHA-256)")
    return s


def _crtsh(value: str) -> tuple[int | None, str | None]:
    """(crt.sh id, sha256) from a bare id or a crt.sh URL."""
    if value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value), None
    s = value.strip()
    if s.isascii() and s.isdigit() and len(s) <= 19:
        return int(s), None
    if s.lower().startswith(("https://crt.sh", "http://crt.sh", "crt.sh/")):
        query = parse_qs(urlsplit(s if "://" in s else "https://" + s).query)
        for key, found in query.items():
            key = key.lower()
            if key == "id" and found and found[0].isdigit() and len(found[0]) <= 19:
                return int(found[0]), None
            if key in ("sha256", "q") and found:
                try:
                    return None, _sha256(found[0])
                except ValueError:
                    pass
    raise ValueError(
        f"crt.sh reference {_show(value)} is neither an id nor a crt.sh URL with id= or sha256="
    )


def _domains(value: str) -> list[str]:
    low = value.lower()
    if _DOMAIN_PUNCT_RE.search(low) is None:
        return low.split()
    return [d for d in _DOMAIN_SPLIT_RE.split(low) if d]


# Column kinds the fast path reads; a list with a PEM or decimal-serial column,
# or with a kind named twice, takes the general path for every row.
_FAST_KINDS = (_SERIAL_HEX, _ISSUER, _SUBJECT, _SHA256, _CRTSH, _DOMAINS)
_MAX_CRTSH_DIGITS = 19  # a signed 64-bit id, as _crtsh accepts


def _fast_columns(columns: list[int | None]) -> tuple[int, ...] | None:
    """Each of _FAST_KINDS' column index (-1 if absent); None if the header does not fit."""
    kinds = [k for k in columns if k is not None]
    if any(k not in _FAST_KINDS for k in kinds) or len(set(kinds)) != len(kinds):
        return None
    return tuple(columns.index(k) if k in kinds else -1 for k in _FAST_KINDS)


class _RowParser:
    """One CSV row → record, by the header's column map or else by what each cell looks like."""

    def __init__(self, columns: list[int | None] | None, source: str, reader: _CertReader) -> None:
        self.columns = columns
        # Only the recognised columns, in order: most rows have a few of many.
        self.plan = (
            None if columns is None else [(i, k) for i, k in enumerate(columns) if k is not None]
        )
        self.source = source
        self.reader = reader
        self.fast = None if columns is None else _fast_columns(columns)
        self.width = 0 if self.fast is None else max(self.fast) + 1

    def parse(self, row: list[str], line: int, delimiter: str) -> AnyItem:
        """The row as CertFields when the fast path can read it, else as the general path does."""
        if self.fast is not None and len(row) >= self.width:
            fields = self._fast(row, line)
            if fields is not None:
                return fields
        return self._parse(row, line, delimiter)

    def _fast(self, row: list[str], line: int) -> CertFields | None:
        """A row of the common shape, read with no function call a cell.

        Plain hex serial, plain SHA-256, bare crt.sh id, issuer, subject,
        domains. None when a cell needs the general path, which then also
        words any rejection.
        """
        serial_at, issuer_at, subject_at, sha256_at, crtsh_at, domains_at = self.fast  # type: ignore[misc]
        serial = sha256 = issuer = subject = None
        crtsh_id: int | None = None
        if serial_at >= 0 and (value := row[serial_at]):
            if len(value) > MAX_SERIAL_HEX_DIGITS or _HEX_RE.fullmatch(value) is None:
                return None
            serial = value.lstrip("0").lower() or "0"
        if sha256_at >= 0 and (value := row[sha256_at]):
            if len(value) != 64 or _HEX_RE.fullmatch(value) is None:
                return None
            sha256 = value.lower()
        if crtsh_at >= 0 and (value := row[crtsh_at]):
            if not (value.isascii() and value.isdigit() and len(value) <= _MAX_CRTSH_DIGITS):
                return None
            crtsh_id = int(value)
        if serial is None and sha256 is None and crtsh_id is None:
            return None
        if issuer_at >= 0:
            issuer = row[issuer_at].strip() or None
        if subject_at >= 0:
            subject = row[subject_at].strip() or None
        dns: tuple[str, ...] = ()
        if domains_at >= 0 and (value := row[domains_at]):
            low = value.lower()
            if _DOMAIN_PUNCT_RE.search(low) is None:
                dns = tuple(low.split())
            else:
                dns = tuple(d for d in _DOMAIN_SPLIT_RE.split(low) if d)
        return (sha256, serial, issuer, subject, dns, None, None, False, crtsh_id, line,
                self.source)

    def _parse(self, row: list[str], line: int, delimiter: str) -> Item:
        serial = issuer = subject = sha256 = None
        crtsh_id: int | None = None
        pem: str | None = None
        dns: list[str] = []
        try:
            plan = self.plan
            if plan is not None:
                width = len(row)
                for i, kind in plan:
                    if i >= width:
                        break
                    value = row[i]
                    if not value or value.isspace():
                        continue
                    if kind == _SERIAL_HEX:
                        serial = _hex_serial(value)
                    elif kind == _ISSUER:
                        issuer = value.strip()
                    elif kind == _DOMAINS:
                        dns.extend(_domains(value))
                    elif kind == _SHA256:
                        sha256 = _sha256(value)
                    elif kind == _CRTSH:
                        crtsh_id, from_url = _crtsh(value)
                        sha256 = sha256 or from_url
                    elif kind == _SERIAL_DEC:
                        serial = _decimal_serial(value)
                    elif kind == _SUBJECT:
                        subject = value.strip()
                    elif kind == _PEM:
                        pem = value
            else:
                serial, issuer, sha256, crtsh_id, pem = self._sniff(row, dns)
        except ValueError as exc:
            return RejectedLine(line, _clip(delimiter.join(row)), str(exc), self.source)
        if pem is not None:
            item = self._from_pem(pem, line, crtsh_id)
            if isinstance(item, RejectedLine):
                return RejectedLine(line, _clip(delimiter.join(row)), item.reason, self.source)
            if dns:
                item = _with_domains(item, dns)
            return item
        if serial is None and sha256 is None and crtsh_id is None:
            return RejectedLine(
                line,
                _clip(delimiter.join(row)),
                "no serial, SHA-256 fingerprint, crt.sh id or certificate in this line",
                self.source,
            )
        return CertRecord(
            sha256,
            serial,
            issuer,
            subject,
            tuple(dns),
            None,
            None,
            False,
            crtsh_id,
            line,
            self.source,
        )

    def _from_pem(self, pem: str, line: int, crtsh_id: int | None) -> Item:
        match = _PEM_BEGIN_RE.search(pem)
        if match is None:
            return RejectedLine(line, "", "certificate column holds no PEM block", self.source)
        body = pem[match.end() :].split("-----END", 1)[0]
        body = "".join(part for part in body.split() if ":" not in part)
        try:
            der = binascii.a2b_base64(body)
        except (binascii.Error, ValueError) as exc:
            return RejectedLine(
                line, "", f"certificate column is not valid base64: {exc}", self.source
            )
        return self.reader.record(der, line, self.source, crtsh_id)

    @staticmethod
    def _sniff(
        row: list[str], dns: list[str]
    ) -> tuple[str | None, str | None, str | None, int | None, str | None]:
        serial = issuer = sha256 = pem = None
        crtsh_id: int | None = None
        unknown: list[str] = []
        for value in row:
            cell = value.strip()
            if not cell:
                continue
            low = cell.lower()
            if "crt.sh" in low:
                crtsh_id, from_url = _crtsh(cell)
                sha256 = sha256 or from_url
            elif "-----BEGIN" in cell:
                pem = cell
            elif "=" in cell:
                issuer = cell
            elif _looks_like_hex(cell):
                compact = cell.translate(_SERIAL_SEPARATORS)
                if len(compact) == 64 and sha256 is None:
                    sha256 = compact.lower()
                elif serial is None:
                    serial = _hex_serial(cell)
                else:
                    raise ValueError(
                        "several values look like serials; add a header line naming the columns"
                    )
            elif _DOMAIN_RE.fullmatch(low.rstrip(".")):
                dns.append(low)
            elif all(_DOMAIN_RE.fullmatch(d) for d in _domains(cell)):
                dns.extend(_domains(cell))
            else:
                unknown.append(cell)
        if serial is None and sha256 is None and crtsh_id is None and pem is None and unknown:
            raise ValueError(
                f"{_show(unknown[0])} is not a serial, SHA-256 fingerprint or crt.sh URL"
            )
        return serial, issuer, sha256, crtsh_id, pem


def _looks_like_hex(cell: str) -> bool:
    s = cell[2:] if cell[:2] in ("0x", "0X") else cell
    s = s.translate(_SERIAL_SEPARATORS)
    return bool(s) and _HEX_RE.fullmatch(s) is not None


def _with_domains(item: CertRecord, extra: list[str]) -> CertRecord:
    names = tuple(dict.fromkeys((*item.dns_names, *extra)))
    return CertRecord(
        item.sha256,
        item.serial,
        item.issuer,
        item.subject,
        names,
        item.not_before,
        item.not_after,
        item.precertificate,
        item.crtsh_id,
        item.line,
        item.source,
    )


def _choose_delimiter(sample: list[str]) -> str:
    """The candidate found the same non-zero number of times on most sample lines."""
    best, best_score = ",", -1
    for delimiter in ("\t", ";", ","):
        counts = [line.count(delimiter) for line in sample]
        nonzero = [c for c in counts if c]
        if not nonzero:
            continue
        common = max(set(nonzero), key=nonzero.count)
        score = nonzero.count(common) * 2 + len(nonzero)
        if score > best_score:
            best, best_score = delimiter, score
    return best


_MAYBE_SKIP = frozenset({"", "#", " ", "\t", "\r"})


def _iter_rows(
    lines: _Lines, head: str, source: str, limits: ListLimits, reader: _CertReader
) -> Iterator[AnyItem]:
    sample = [
        ln for ln in head.splitlines()[:21] if ln.strip() and not ln.lstrip().startswith("#")
    ][:20]
    # The header line alone decides when there is one: data lines may hold
    # issuer DNs full of commas in a semicolon-separated file.
    first = sample[0] if sample else ""
    header_delims = [d for d in ("\t", ";", ",") if d in first]
    header_cells = first.split(header_delims[0]) if header_delims else [first]
    has_header = any(_column_kind(c) is not None for c in header_cells)
    delimiter = (
        max(("\t", ";", ","), key=first.count)
        if has_header and header_delims
        else _choose_delimiter(sample)
    )
    # Process-wide setting (csv has no per-reader one); the default limits keep
    # it at csv's own default order of magnitude.
    csv.field_size_limit(limits.max_field_chars)
    rows = csv.reader(lines, delimiter=delimiter)
    parser: _RowParser | None = None
    previous = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            start = previous + 1
            yield from lines.overlong
            lines.overlong.clear()
            yield RejectedLine(start, "", f"lines {start}–{rows.line_num}: {exc}", source)
            previous = rows.line_num
            continue
        line = previous + 1
        previous = rows.line_num
        if lines.overlong:
            yield from lines.overlong
            lines.overlong.clear()
        if not row:
            continue
        first_cell = row[0]
        if first_cell[:1] in _MAYBE_SKIP and (
            (len(row) == 1 and not first_cell.strip()) or first_cell.lstrip()[:1] == "#"
        ):
            continue
        if len(row) > limits.max_columns:
            yield RejectedLine(
                line,
                _clip(delimiter.join(row[:50])),
                f"line has {len(row):,} columns, more than {limits.max_columns}",
                source,
            )
            continue
        if parser is None:
            columns = [_column_kind(c) for c in row] if has_header else None
            if columns is not None and not any(c is not None for c in columns):
                columns = None  # the first row was data after all
            if columns is not None:
                parser = _RowParser(columns, source, reader)
                if not _IDENTIFYING.intersection(c for c in columns if c is not None):
                    yield RejectedLine(
                        line,
                        _clip(delimiter.join(row)),
                        "header names no serial, fingerprint, crt.sh id or certificate column;"
                        " reading the lines by their content",
                        source,
                    )
                    parser = _RowParser(None, source, reader)
                continue
            parser = _RowParser(None, source, reader)
        yield parser.parse(row, line, delimiter)
    yield from lines.overlong
    lines.overlong.clear()


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
    filename: str, data: bytes, *, limits: ListLimits = DEFAULT_LIMITS
) -> Iterator[CertRecord | RejectedLine]:
    """Yield a record per certificate or row and a `RejectedLine` per unreadable line.

    Raises only `LimitExceeded`; what was yielded before it stays valid.
    """
    for item in _iter_items(filename, data, limits):
        yield CertRecord(*item) if type(item) is tuple else item  # type: ignore[misc]


def iter_certificate_rows(
    filename: str, data: bytes, *, limits: ListLimits = DEFAULT_LIMITS
) -> Iterator[CertFields | RejectedLine]:
    """As `iter_certificate_list`, each record as its CertFields tuple: for bulk inserts.

    A million-row CSV list then builds no CertRecord at all (~1.2 µs a row).
    """
    for item in _iter_items(filename, data, limits):
        yield _fields(item) if type(item) is CertRecord else item  # type: ignore[misc,arg-type]


def _iter_items(filename: str, data: bytes, limits: ListLimits) -> Iterator[AnyItem]:
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


def looks_like_certificate_list(filename: str, content_type: str, data: bytes) -> bool:
    """Whether an attachment is a certificate list: by its name or type, then its content.

    Compressed attachments are judged by their first members, so a .docx
    (a zip of XML) is not taken for a list.
    """
    name = filename.lower()
    ctype, _, params = content_type.lower().partition(";")
    ctype = ctype.strip()
    if ctype in _NOT_LISTS or name.endswith((".p7s", ".p7m")):
        return False  # S/MIME signatures and messages carry certificates but are not lists
    if "smime-type" in params and "certs-only" not in params:
        return False
    named = name.endswith(_LIST_EXTENSIONS) or ctype in _LIST_CONTENT_TYPES
    if not is_compressed(data):
        return _head_looks_like(named, ctype, data[:CHUNK])
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
