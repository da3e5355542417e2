"""Read the usual detached S/MIME signature with a small strict DER reader, or say it cannot.

asn1crypto reads any CMS but costs ~0.25 ms a signature in Python objects,
as much as a quarter of hashing a 1 MB message. Nearly every signature is
plain DER with one or two signers, certificates only, no CRLs, and a
well-known signature algorithm; this reads just the fields verification
needs from those. Anything else (BER, indefinite lengths, CRLs, attribute
certificates, RSASSA-PSS, unknown algorithms or time forms, over a limit)
returns None, and the caller reads it with asn1crypto (`smime_asn1`), so
every check and every message stays as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import cms

from bot.parse.smime.asn1 import MAX_CMS_CERTIFICATES, signed_attribute_forms
from bot.parse.smime.cms import MAX_SIGNER_INFOS
from bot.parse.smime.values import SignatureScheme, SignedFields, SignerFields, SignerId

# DER tags of the elements read (universal, or context-specific as CMS uses them).
_INTEGER, _OCTET_STRING, _NULL, _OID = 0x02, 0x04, 0x05, 0x06
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18
_SEQUENCE, _SET = 0x30, 0x31
_CONTEXT_0, _CONTEXT_1 = 0xA0, 0xA1  # [0] / [1] constructed
_KEY_IDENTIFIER = 0x80  # SignerIdentifier subjectKeyIdentifier: [0] IMPLICIT OCTET STRING
_CONSTRUCTED = 0x20  # the tag bit BER's indefinite length needs
_EOC = b"\x00\x00"  # end-of-contents, closing an indefinite length
# Nesting of indefinite lengths walked: CMS writers nest four or five.
_MAX_BER_DEPTH = 16
# Length octets beyond the first: 4 allows 4 GB, far past any message we accept.
_MAX_LENGTH_OCTETS = 4
# UTCTime centuries, as RFC 5280 and asn1crypto read them: YY < 50 is 20YY.
_UTC_TIME_PIVOT = 50


def _oid(dotted: str) -> bytes:
    """The content octets of an OBJECT IDENTIFIER, so OIDs compare as bytes."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


_SIGNED_DATA = _oid("1.2.840.113549.1.7.2")
_DIGESTS = {
    _oid("1.3.14.3.2.26"): "sha1",
    _oid("2.16.840.1.101.3.4.2.4"): "sha224",
    _oid("2.16.840.1.101.3.4.2.1"): "sha256",
    _oid("2.16.840.1.101.3.4.2.2"): "sha384",
    _oid("2.16.840.1.101.3.4.2.3"): "sha512",
}
# signatureAlgorithm OIDs read here, with asn1crypto's names for them.
_SCHEMES = {
    _oid(dotted): SignatureScheme(name, hash_name, dotted)
    for dotted, name, hash_name in [
        ("1.2.840.113549.1.1.1", "rsassa_pkcs1v15", None),  # rsaEncryption
        ("1.2.840.113549.1.1.5", "rsassa_pkcs1v15", "sha1"),
        ("1.2.840.113549.1.1.14", "rsassa_pkcs1v15", "sha224"),
        ("1.2.840.113549.1.1.11", "rsassa_pkcs1v15", "sha256"),
        ("1.2.840.113549.1.1.12", "rsassa_pkcs1v15", "sha384"),
        ("1.2.840.113549.1.1.13", "rsassa_pkcs1v15", "sha512"),
        ("1.2.840.10045.4.1", "ecdsa", "sha1"),
        ("1.2.840.10045.4.3.1", "ecdsa", "sha224"),
        ("1.2.840.10045.4.3.2", "ecdsa", "sha256"),
        ("1.2.840.10045.4.3.3", "ecdsa", "sha384"),
        ("1.2.840.10045.4.3.4", "ecdsa", "sha512"),
    ]
}
_CONTENT_TYPE = _oid("1.2.840.113549.1.9.3")
_MESSAGE_DIGEST = _oid("1.2.840.113549.1.9.4")
_SIGNING_TIME = _oid("1.2.840.113549.1.9.5")


class _NotPlain(Exception):
    """Not the plain DER this reader takes; asn1crypto reads it instead."""


def _tlv(data: bytes, pos: int, end: int, *, ber: bool = False) -> tuple[int, int, int, int]:
    """(tag, content start, content end, next element) of the element at `pos`, within `end`.

    Lengths must be DER's definite, minimal form; with `ber`, a constructed
    element may also have BER's indefinite length (NSS and OpenSSL write the
    outer CMS layers so), its end found by walking its children.
    """
    if pos + 2 > end:
        raise _NotPlain
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise _NotPlain  # high tag numbers: none in the fields read
    if first == 0x80 and ber and tag & _CONSTRUCTED:
        return tag, pos + 2, *_end_of_contents(data, pos + 2, end)
    if first < 0x80:
        start, length = pos + 2, first
    else:
        count = first & 0x7F
        start = pos + 2 + count
        # count 0 is BER's indefinite length; a leading zero or a short form
        # written long is BER too. DER has one encoding; the rest goes to asn1crypto.
        if not 0 < count <= _MAX_LENGTH_OCTETS or start > end or data[pos + 2] == 0:
            raise _NotPlain
        length = int.from_bytes(data[pos + 2 : start], "big")
        if length < 0x80:
            raise _NotPlain
    if start + length > end:
        raise _NotPlain
    return tag, start, start + length, start + length


def _end_of_contents(data: bytes, pos: int, end: int, depth: int = 0) -> tuple[int, int]:
    """(content end, next element) of an indefinite-length element whose content starts at pos."""
    if depth >= _MAX_BER_DEPTH:
        raise _NotPlain
    while True:
        if pos + 2 > end:
            raise _NotPlain
        if data[pos : pos + 2] == _EOC:
            return pos, pos + 2
        if data[pos] & _CONSTRUCTED and data[pos + 1] == 0x80:
            _, pos = _end_of_contents(data, pos + 2, end, depth + 1)
        else:
            pos = _tlv(data, pos, end)[3]


def _expect(data: bytes, pos: int, end: int, tag: int, *, ber: bool = False) -> tuple[int, int]:
    """(content start, content end) of the element at pos, which must have `tag`."""
    found, start, stop, _ = _tlv(data, pos, end, ber=ber)
    if found != tag:
        raise _NotPlain
    return start, stop


def _children(
    data: bytes, start: int, end: int, *, ber: bool = False
) -> Iterator[tuple[int, int, int, int]]:
    """(tag, element start, content start, content end) of each element in start..end.

    With `ber`, the elements may have indefinite lengths but a final
    end-of-contents is not expected here: `end` is the parent's content end.
    """
    pos = start
    while pos < end:
        tag, content, stop, following = _tlv(data, pos, end, ber=ber)
        yield tag, pos, content, stop
        pos = following


def _algorithm(data: bytes, start: int, end: int) -> bytes:
    """The OID of an AlgorithmIdentifier whose parameters are absent or NULL."""
    oid_start, oid_end = _expect(data, start, end, _OID)
    if oid_end != end and data[oid_end:end] != bytes([_NULL, 0]):
        raise _NotPlain  # parameters (RSASSA-PSS, curves): asn1crypto reads them
    return data[oid_start:oid_end]


def _time(tag: int, text: bytes) -> datetime:
    """A signingTime as DER writes it without fractions: YYMMDDHHMMSSZ or YYYYMMDDHHMMSSZ."""
    if tag == _UTC_TIME and len(text) == 13 and text.endswith(b"Z") and text[:12].isdigit():
        year = int(text[:2])
        year += 2000 if year < _UTC_TIME_PIVOT else 1900
        digits = text[2:12]
    elif (
        tag == _GENERALIZED_TIME and len(text) == 15 and text.endswith(b"Z") and text[:14].isdigit()
    ):
        year, digits = int(text[:4]), text[4:14]
    else:
        raise _NotPlain
    try:
        return datetime(year, *(int(digits[i : i + 2]) for i in range(0, 10, 2)), tzinfo=UTC)
    except ValueError as exc:
        raise _NotPlain from exc


@dataclass(frozen=True)
class DerSigner(SignerFields):
    digest: str
    attrs: dict[str, object] | None
    attrs_der: bytes  # the SET OF as hashed: the [0] tag replaced by SET
    sid: SignerId
    algorithm: SignatureScheme
    value: bytes

    def digest_name(self) -> str:
        return self.digest

    def attributes(self) -> dict[str, object] | None:
        return self.attrs

    def attributes_der(self) -> Iterator[bytes]:
        # Strict DER lengths do not make the SET OF sorted; asn1crypto's
        # re-encoding is still offered, lazily, if the bytes as sent fail.
        yield from signed_attribute_forms(self.attrs_der, cms.CMSAttributes.load(self.attrs_der))

    def signer_id(self) -> SignerId:
        return self.sid

    def scheme(self) -> SignatureScheme:
        return self.algorithm

    def pss_parameters(self) -> tuple[str, str, int]:
        raise ValueError("RSASSA-PSS parameters are read by asn1crypto")  # never read here

    def signature(self) -> bytes:
        return self.value


@dataclass(frozen=True)
class DerSigned(SignedFields):
    certificate_ders: tuple[bytes, ...]
    signer_fields: tuple[DerSigner, ...]
    content_present: bool

    def certificates(self) -> list[bytes]:
        return list(self.certificate_ders)

    def crls(self) -> list[bytes]:
        return []

    def signers(self) -> Sequence[SignerFields]:
        return self.signer_fields

    def has_content(self) -> bool:
        return self.content_present


def read_signed_data(der: bytes) -> DerSigned | None:
    """The fields of a plain-DER ContentInfo holding SignedData, or None for asn1crypto."""
    try:
        return _signed_data(der)
    except _NotPlain:
        return None


def _signed_data(der: bytes) -> DerSigned:
    # ContentInfo, its [0] and the SignedData may use indefinite lengths (BER);
    # each certificate and SignerInfo must be DER: they are read, or hashed, as such.
    tag, start, end, following = _tlv(der, 0, len(der), ber=True)
    if tag != _SEQUENCE or following != len(der):
        raise _NotPlain  # trailing bytes
    oid_start, oid_end = _expect(der, start, end, _OID)
    if der[oid_start:oid_end] != _SIGNED_DATA:
        raise _NotPlain
    wrapper = list(_children(der, oid_end, end, ber=True))
    if [w[0] for w in wrapper] != [_CONTEXT_0]:
        raise _NotPlain
    inner = list(_children(der, wrapper[0][2], wrapper[0][3], ber=True))
    if [i[0] for i in inner] != [_SEQUENCE]:
        raise _NotPlain
    fields = list(_children(der, inner[0][2], inner[0][3], ber=True))
    tags = [f[0] for f in fields]
    if tags == [_INTEGER, _SET, _SEQUENCE, _SET]:
        fields.insert(3, (_CONTEXT_0, 0, 0, 0))  # no certificates carried: none to read
    # version, digestAlgorithms, encapContentInfo, certificates [0], signerInfos; no CRLs [1]
    elif tags != [_INTEGER, _SET, _SEQUENCE, _CONTEXT_0, _SET]:
        raise _NotPlain
    _, _, encap_start, encap_end = fields[2]
    _, eoid_end = _expect(der, encap_start, encap_end, _OID)
    certificates = []
    for tag, element, _, stop in _children(der, fields[3][2], fields[3][3], ber=True):
        if tag != _SEQUENCE or der[element + 1] == 0x80:
            raise _NotPlain  # attribute or other certificate choices; BER certificates
        certificates.append(der[element:stop])
    if len(certificates) > MAX_CMS_CERTIFICATES:
        raise _NotPlain  # asn1crypto's reader refuses it with the limit's reason
    signers = []
    for tag, element, content, stop in _children(der, fields[4][2], fields[4][3], ber=True):
        if tag != _SEQUENCE or der[element + 1] == 0x80 or len(signers) >= MAX_SIGNER_INFOS:
            raise _NotPlain  # asn1crypto's reader reads it or refuses it with the reason
        signers.append(_signer(der, content, stop))
    if not signers:
        raise _NotPlain
    return DerSigned(tuple(certificates), tuple(signers), content_present=eoid_end != encap_end)


def _signer(der: bytes, start: int, end: int) -> DerSigner:
    fields = list(_children(der, start, end))
    if fields and fields[-1][0] == _CONTEXT_1:
        fields.pop()  # unsigned attributes (countersignatures…): not verified, as before
    tags = [f[0] for f in fields]
    if tags[:1] != [_INTEGER] or tags[-2:] != [_SEQUENCE, _OCTET_STRING]:
        raise _NotPlain
    if tags[2:-2] not in ([_SEQUENCE], [_SEQUENCE, _CONTEXT_0]):
        raise _NotPlain
    sid_tag, _, sid_start, sid_end = fields[1]
    digest = _DIGESTS.get(_algorithm(der, fields[2][2], fields[2][3]))
    scheme = _SCHEMES.get(_algorithm(der, fields[-2][2], fields[-2][3]))
    if digest is None or scheme is None:
        raise _NotPlain  # asn1crypto names what is not accepted
    attrs: dict[str, object] | None = None
    attrs_der = b""
    if len(fields) == 6:
        _, element, attrs_start, attrs_end = fields[3]
        attrs_der = bytes([_SET]) + der[element + 1 : attrs_end]
        # An empty [0] counts as no attributes, as asn1crypto's reader has it.
        attrs = _attributes(der, attrs_start, attrs_end) if attrs_end > attrs_start else None
    return DerSigner(
        digest=digest,
        attrs=attrs,
        attrs_der=attrs_der,
        sid=_signer_id(der, sid_tag, sid_start, sid_end),
        algorithm=scheme,
        value=der[fields[-1][2] : fields[-1][3]],
    )


def _signer_id(der: bytes, tag: int, start: int, end: int) -> SignerId:
    if tag == _KEY_IDENTIFIER:
        return SignerId(key_identifier=der[start:end])
    if tag != _SEQUENCE:
        raise _NotPlain
    _, name_end = _expect(der, start, end, _SEQUENCE)  # the Name's element starts at `start`
    serial_start, serial_end = _expect(der, name_end, end, _INTEGER)
    if serial_end != end or serial_start == serial_end:
        raise _NotPlain
    return SignerId(
        issuer=der[start:name_end],
        serial=int.from_bytes(der[serial_start:serial_end], "big", signed=True),
    )


def _attributes(der: bytes, start: int, end: int) -> dict[str, object]:
    found: dict[str, object] = {}
    for tag, _, attr_start, attr_end in _children(der, start, end):
        if tag != _SEQUENCE:
            raise _NotPlain
        oid_start, oid_end = _expect(der, attr_start, attr_end, _OID)
        oid = der[oid_start:oid_end]
        # Every attribute's shape is checked, as asn1crypto's reader does in
        # walking them; only these three values are read.
        values_start, values_end = _expect(der, oid_end, attr_end, _SET)
        if values_end != attr_end:
            raise _NotPlain
        if oid not in (_CONTENT_TYPE, _MESSAGE_DIGEST, _SIGNING_TIME):
            continue
        values = list(_children(der, values_start, values_end))
        if len(values) != 1:
            raise _NotPlain  # asn1crypto records it as unreadable
        value_tag, _, value_start, value_end = values[0]
        text = der[value_start:value_end]
        if oid == _CONTENT_TYPE:
            if value_tag != _OID:
                raise _NotPlain
            found["content_type"] = text
        elif oid == _MESSAGE_DIGEST:
            if value_tag != _OCTET_STRING:
                raise _NotPlain
            found["message_digest"] = text
        else:
            found["signing_time"] = _time(value_tag, text)
    return found
