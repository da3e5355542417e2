"""Certificates, PKCS#7 bundles and CRLs, in DER or PEM, read into records.

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
import hashlib
import re
from collections.abc import Callable, Iterator

from cryptography import x509
from cryptography.x509.oid import NameOID

from bot.parse import CERTIFICATE_ERRORS
from bot.parse.certlists.lines import _Lines
from bot.parse.certlists.records import (
    CertRecord,
    Item,
    ListLimits,
    RejectedLine,
    _clip,
)

# Distinct-name caches are per list; past this size they are dropped and
# restarted so a list of unique subjects cannot grow them without bound.
NAME_CACHE_SIZE = 4096

_PEM_BEGIN_RE = re.compile(r"^-----BEGIN ([A-Z0-9 #]+)-----", re.MULTILINE)

_CERT_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"})
_PKCS7_LABELS = frozenset({"PKCS7", "PKCS #7 SIGNED DATA", "CMS", "CERTIFICATE CHAIN"})
_CRL_LABELS = frozenset({"X509 CRL"})

# DER content bytes of the OIDs looked up by the walker.
_OID_SAN = bytes.fromhex("551d11")  # 2.5.29.17
_OID_CT_POISON = bytes.fromhex("2b06010401d679020403")  # 1.3.6.1.4.1.11129.2.4.3
_OID_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")  # 1.2.840.113549.1.7.2, with tag


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


# What cryptography raises for a name it parsed lazily and cannot read: a
# ValueError for bad text, a KeyError for an ASN.1 string tag it does not know
# (a certificate whose name has a tag of 0 loads, then fails on `.issuer`).
NAME_ERRORS = (ValueError, KeyError)


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
        except NAME_ERRORS:
            # e.g. a CN that is not valid UTF-8: the certificate still counts.
            text = None
        cache[key] = text
        return text

    def record(
        self, der: bytes, line: int | None, source: str, crtsh_id: int | None = None
    ) -> Item:
        try:
            # A non-positive serial only warns (silenced in bot.parse).
            cert = x509.load_der_x509_certificate(der)
        except CERTIFICATE_ERRORS as exc:
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
        except NAME_ERRORS:
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
    except NAME_ERRORS:
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
