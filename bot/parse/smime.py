"""Verify or open the S/MIME layer of a raw message and say what it proves, as a typed result.

Pure: bytes in, `SmimeResult` out. No storage, no network, no wall clock (the
validation time is a parameter), and never an exception on hostile input.

cryptography has no CMS verification API, so the work is split: asn1crypto
reads the CMS structures; cryptography does every digest, signature and
certificate-path check. Path validation first tries cryptography's
`x509.verification` (WebPKI rules for CAs); real S/MIME CAs often fail those
rules (SHA-1 signatures, missing key usage, 1024-bit keys in old chains), so a
second, plain RFC 5280-style path check decides when that one refuses: issuer
name, issuer signature, basicConstraints/keyUsage/pathLen, validity at `at`.

    verify_message(raw) ─ find the S/MIME entity (top level or inside multipart/*)
      ├─ multipart/signed ─ content = exact bytes of part 1, CMS from part 2
      ├─ application/pkcs7-mime signed-data ─ content = eContent
      ├─ application/pkcs7-mime enveloped-data ─ decrypt, verify the inner entity
      └─ nothing ─ "unsigned"
    signed ─ signer cert (CMS certs + anchors) ─ signature, messageDigest ─ chain
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import re
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import collapse_rfc2231_value
from functools import lru_cache
from pathlib import Path
from typing import Literal

from asn1crypto import cms
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

log = logging.getLogger("rootnotify.parse.smime")

SmimeStatus = Literal["valid", "invalid", "untrusted", "expired", "unsigned", "encrypted"]

# Limits on hostile input. Real messages stay far below each one.
# Real mail nests multipart/mixed two or three levels around a signature.
MAX_MIME_DEPTH = 8
# Parts looked at per multipart while searching for the S/MIME entity.
MAX_MIME_PARTS = 100
# Layers of encrypt/sign wrapping opened (signed inside encrypted inside …).
MAX_SMIME_LAYERS = 4
# A signature carries its chain: 2–5 certificates. Thousands is an attack on our CPU.
MAX_CMS_CERTIFICATES = 64
# CRLs carried in the CMS (PKITS carries one or two).
MAX_CMS_CRLS = 16
# Messages have one signer, rarely two (dual RSA/EC signatures).
MAX_SIGNER_INFOS = 4
# Longest certificate path (leaf … anchor); S/MIME chains are 2–4 long.
MAX_CHAIN_DEPTH = 8
# Certificate signature checks spent building paths; bounds loops and
# many same-named candidate issuers (each check is ~30 µs for RSA-2048).
MAX_PATH_SIGNATURE_CHECKS = 64
# Per-certificate facts (names, e-mail addresses, key usage) and built chains
# are cached: a sender signs many messages with one certificate, and deriving
# them costs as much as the MIME and CMS handling of a message (~0.2 ms).
# A few hundred signers is every CA contact of a root program with room to
# spare; each entry is a few KB.
CERTIFICATE_CACHE_SIZE = 512
CHAIN_CACHE_SIZE = 512

_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# SHA-1 still appears in real S/MIME from older clients; accepted but flagged.
_WEAK_DIGESTS = frozenset({"sha1"})
_SIGNATURE_TYPES = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature"})
_MIME_TYPES = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)
_PEM_CERT_LABELS = frozenset({b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"})
_PEM_PKCS7_LABELS = frozenset({b"PKCS7", b"PKCS #7 SIGNED DATA", b"CMS"})


@dataclass(frozen=True)
class SmimeResult:
    status: SmimeStatus
    reason: str
    signer_subject: str | None = None
    signer_emails: tuple[str, ...] = ()
    signer_certificate: bytes | None = None
    signing_time: datetime | None = None
    digest_algorithm: str | None = None
    weak_digest: bool = False
    from_mismatch: bool = False
    content: bytes | None = None
    certificates: tuple[bytes, ...] = ()


class _Refused(Exception):
    """The S/MIME structure is broken or over a limit; the text becomes the `invalid` reason."""


@dataclass(frozen=True)
class _Entity:
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


@dataclass(frozen=True)
class _Context:
    anchors: tuple[x509.Certificate, ...]
    at: datetime
    from_address: str | None
    decryption_key: PrivateKeyTypes | None
    decryption_certificate: x509.Certificate | None


# ── public API ──────────────────────────────────────────────────────────────


def verify_message(
    raw: bytes,
    *,
    anchors: Sequence[x509.Certificate],
    at: datetime,
    from_address: str | None = None,
    decryption_key: PrivateKeyTypes | None = None,
    decryption_certificate: x509.Certificate | None = None,
) -> SmimeResult:
    """Verify (or decrypt, then verify) the S/MIME layer of `raw` as of `at`."""
    ctx = _Context(
        anchors=tuple(anchors),
        at=at if at.tzinfo else at.replace(tzinfo=UTC),
        from_address=from_address.strip().lower() if from_address else None,
        decryption_key=decryption_key,
        decryption_certificate=decryption_certificate,
    )
    try:
        return _verify(raw, ctx, layer=0)
    except _Refused as refused:
        return SmimeResult("invalid", str(refused))
    except Exception as exc:  # the promise to callers: hostile input never raises
        log.warning("S/MIME structure unreadable: %s: %s", type(exc).__name__, exc)
        return SmimeResult("invalid", f"unreadable S/MIME structure ({type(exc).__name__}: {exc})")


def load_certificates(path_or_bytes: str | Path | bytes) -> list[x509.Certificate]:
    """Certificates from PEM (text around the blocks is skipped), DER, or a PKCS#7 bundle.

    Raises ValueError when nothing usable is found or a certificate block is broken,
    since a silently shortened anchor list would change what we trust.
    """
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    if b"-----BEGIN " in data:
        certs: list[x509.Certificate] = []
        for number, block in enumerate(_PEM_BLOCK.finditer(data), start=1):
            label = block.group(1)
            if label not in _PEM_CERT_LABELS and label not in _PEM_PKCS7_LABELS:
                continue  # private keys, CRLs, requests: not certificates
            try:
                der = base64.b64decode(b"".join(block.group(2).split()), validate=True)
                if label in _PEM_PKCS7_LABELS:
                    certs.extend(_certificates_from_pkcs7(der))
                else:
                    # OpenSSL's TRUSTED CERTIFICATE appends trust data after the certificate.
                    certs.append(x509.load_der_x509_certificate(_first_der_element(der)))
            except (ValueError, binascii.Error) as exc:
                raise ValueError(f"PEM block {number} ({label.decode()}) is broken: {exc}") from exc
        if not certs:
            raise ValueError("no certificate found in the PEM text")
        return certs
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        pass
    try:
        certs = _certificates_from_pkcs7(data)
    except ValueError as exc:
        raise ValueError("neither PEM, a DER certificate nor a PKCS#7 bundle") from exc
    if not certs:
        raise ValueError("the PKCS#7 bundle holds no certificate")
    return certs


# ── locating the S/MIME entity ─────────────────────────────────────────────


def _parse_entity(raw: bytes) -> _Entity:
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
    return _Entity(headers, raw, body_start)


def _split_multipart(entity: _Entity, boundary: str) -> list[bytes]:
    """The exact bytes of each body part; the line break before a delimiter belongs to it."""
    body, first = entity.raw, entity.body_start
    delimiter = b"--" + boundary.encode("utf-8", "replace")
    parts: list[bytes] = []
    part_start: int | None = None
    search_from = first
    while len(parts) < MAX_MIME_PARTS:
        if search_from == first and body.startswith(delimiter, first):
            line_start = first
        else:
            found = body.find(b"\n" + delimiter, search_from)
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
            parts.append(body[part_start:end])
        if closing:
            break
        part_start = line_end + 1
        search_from = line_end
    return parts


def _find_smime(raw: bytes, depth: int = 0) -> tuple[str, _Entity, int] | None:
    """(kind, entity, depth): kind "signed" for multipart/signed, "mime" for pkcs7-mime."""
    entity = _parse_entity(raw)
    kind = _smime_kind(entity)
    if kind is not None:
        return kind, entity, depth
    ctype = entity.content_type
    if not ctype.startswith("multipart/") or depth >= MAX_MIME_DEPTH:
        return None
    boundary = entity.param("boundary")
    if not boundary:
        return None
    for part in _split_multipart(entity, boundary):
        found = _find_smime(part, depth + 1)
        if found is not None:
            return found
    return None


def _smime_kind(entity: _Entity) -> str | None:
    ctype = entity.content_type
    if ctype == "multipart/signed":
        return "signed"
    if ctype in _MIME_TYPES or (
        ctype == "application/octet-stream" and entity.param("name").lower().endswith(".p7m")
    ):
        return "mime"
    return None


def _looks_like_smime(raw: bytes) -> bool:
    """Is `raw` itself an S/MIME entity? Header bytes are screened before the (slower) parse."""
    end = _HEADER_END.search(raw)
    head = (raw[: end.start()] if end else raw).lower()
    if b"pkcs7" not in head and b"multipart/signed" not in head and b".p7m" not in head:
        return False
    return _smime_kind(_parse_entity(raw)) is not None


def _decode_body(entity: _Entity) -> bytes:
    encoding = str(entity.headers.get("content-transfer-encoding", "")).strip().lower()
    if encoding != "base64":
        return entity.body
    compact = b"".join(entity.body.split())
    compact += b"=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error as exc:
        raise _Refused(f"S/MIME body is not valid base64: {exc}") from exc


# ── the verification flow ──────────────────────────────────────────────────


def _verify(raw: bytes, ctx: _Context, layer: int) -> SmimeResult:
    found = _find_smime(raw)
    if found is None:
        return SmimeResult("unsigned", "no S/MIME signature or encryption found")
    kind, entity, depth = found
    nested = (
        "; the signed part sits inside a multipart, other parts are not covered" if depth else ""
    )
    if kind == "signed":
        boundary = entity.param("boundary")
        parts = _split_multipart(entity, boundary) if boundary else []
        if len(parts) < 2:
            raise _Refused("multipart/signed without its two parts")
        signature_entity = _parse_entity(parts[1])
        protocol = entity.param("protocol").lower()
        if (
            protocol not in _SIGNATURE_TYPES
            and signature_entity.content_type not in _SIGNATURE_TYPES
        ):
            return SmimeResult(
                "unsigned", f"multipart/signed with protocol {protocol!r} is not S/MIME"
            )
        signed_data = _load_signed_data(_decode_body(signature_entity))
        result = _verify_signed_data(signed_data, parts[0], ctx, detached=True)
    else:
        der = _decode_body(entity)
        content_info = _load_content_info(der)
        ctype = content_info["content_type"].native
        if ctype == "enveloped_data":
            return _open_enveloped(der, ctx, layer)
        if ctype != "signed_data":
            raise _Refused(f"unsupported CMS content type {ctype!r}")
        signed_data = content_info["content"]
        content = _encapsulated_content(signed_data)
        if not len(signed_data["signer_infos"]):
            certs = _cms_certificates(signed_data)
            return SmimeResult(
                "unsigned",
                f"certs-only S/MIME ({len(certs)} certificates), no signature",
                certificates=tuple(c.public_bytes(Encoding.DER) for c in certs),
            )
        if content is None:
            raise _Refused("opaque signed-data carries no content")
        result = _verify_signed_data(signed_data, content, ctx, detached=False)
    if result.content is not None and _looks_like_smime(result.content):
        nested += "; the signed content is itself S/MIME (inner layer not verified here)"
    return replace(result, reason=result.reason + nested) if nested else result


def _open_enveloped(der: bytes, ctx: _Context, layer: int) -> SmimeResult:
    if ctx.decryption_key is None or ctx.decryption_certificate is None:
        return SmimeResult("encrypted", "encrypted (enveloped-data); no decryption key configured")
    try:
        inner = pkcs7.pkcs7_decrypt_der(der, ctx.decryption_certificate, ctx.decryption_key, [])
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return SmimeResult("encrypted", f"encrypted (enveloped-data); could not decrypt: {exc}")
    if layer + 1 >= MAX_SMIME_LAYERS:
        raise _Refused(f"more than {MAX_SMIME_LAYERS} nested S/MIME layers")
    result = _verify(inner, ctx, layer + 1)
    if result.status == "unsigned":
        return replace(result, reason="decrypted; the content is not signed", content=inner)
    return replace(result, reason="decrypted; " + result.reason)


def _load_content_info(der: bytes) -> cms.ContentInfo:
    try:
        content_info = cms.ContentInfo.load(der)
        content_info["content_type"].native  # noqa: B018 - forces the lazy parse here
    except (ValueError, TypeError) as exc:
        raise _Refused(f"not a CMS structure: {exc}") from exc
    return content_info


def _load_signed_data(der: bytes) -> cms.SignedData:
    content_info = _load_content_info(der)
    if content_info["content_type"].native != "signed_data":
        raise _Refused(
            f"signature part holds {content_info['content_type'].native}, not signed-data"
        )
    return content_info["content"]


def _encapsulated_content(signed_data: cms.SignedData) -> bytes | None:
    content = signed_data["encap_content_info"]["content"]
    if isinstance(content, asn1_core.Void):
        return None
    value = content.native
    return value if isinstance(value, bytes) else content.contents


def _cms_certificates(signed_data: cms.SignedData) -> list[x509.Certificate]:
    choices = signed_data["certificates"]
    if isinstance(choices, asn1_core.Void):
        return []
    if len(choices) > MAX_CMS_CERTIFICATES:
        raise _Refused(
            f"signature carries {len(choices)} certificates, over the limit of "
            f"{MAX_CMS_CERTIFICATES}"
        )
    certs = []
    for choice in choices:
        if choice.name == "certificate":  # attribute certificates play no part in the chain
            try:
                certs.append(x509.load_der_x509_certificate(choice.chosen.dump()))
            except ValueError as exc:
                log.info("unreadable certificate in CMS skipped: %s", exc)
    return certs


def _cms_crls(signed_data: cms.SignedData) -> list[x509.CertificateRevocationList]:
    choices = signed_data["crls"]
    if isinstance(choices, asn1_core.Void):
        return []
    crls = []
    for choice in list(choices)[:MAX_CMS_CRLS]:
        if choice.name == "crl":
            try:
                crls.append(x509.load_der_x509_crl(choice.chosen.dump()))
            except ValueError as exc:
                log.info("unreadable CRL in CMS skipped: %s", exc)
    return crls


def _verify_signed_data(
    signed_data: cms.SignedData, content: bytes, ctx: _Context, *, detached: bool
) -> SmimeResult:
    embedded = _cms_certificates(signed_data)
    certificates = tuple(c.public_bytes(Encoding.DER) for c in embedded)
    signer_infos = signed_data["signer_infos"]
    if not 0 < len(signer_infos) <= MAX_SIGNER_INFOS:
        raise _Refused(f"{len(signer_infos)} signers; expected 1 to {MAX_SIGNER_INFOS}")
    results = [
        _verify_signer(si, signed_data, content, embedded, ctx, detached=detached)
        for si in signer_infos
    ]
    # Every signer must hold (as openssl does); report the worst one.
    rank = {"invalid": 0, "untrusted": 1, "expired": 2, "valid": 3}
    worst = min(results, key=lambda r: rank.get(r.status, 0))
    return replace(worst, certificates=certificates, content=content)


def _verify_signer(
    signer_info: cms.SignerInfo,
    signed_data: cms.SignedData,
    content: bytes,
    embedded: list[x509.Certificate],
    ctx: _Context,
    *,
    detached: bool,
) -> SmimeResult:
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    if digest_name not in _DIGESTS:
        return SmimeResult("invalid", f"digest algorithm {digest_name} is not accepted")
    base = SmimeResult(
        "invalid", "", digest_algorithm=digest_name, weak_digest=digest_name in _WEAK_DIGESTS
    )
    attrs = _signed_attributes(signer_info)
    if attrs is not None:
        base = replace(base, signing_time=attrs.get("signing_time"))
    signer = _find_signer(signer_info["sid"], [*embedded, *ctx.anchors])
    if signer is None:
        return replace(base, status="untrusted", reason="signer certificate not found")
    base = _with_signer(base, signer, ctx)

    candidates = _content_forms(content)
    if attrs is not None:
        if "content_type" not in attrs:
            return replace(base, reason="contentType attribute missing from the signed attributes")
        wanted = attrs.get("message_digest")
        if not isinstance(wanted, bytes):
            return replace(
                base, reason="messageDigest attribute missing from the signed attributes"
            )
        if not any(_digest(digest_name, form) == wanted for form in candidates):
            extra = (
                " (its embedded copy of the content is ignored)"
                if detached and (_encapsulated_content(signed_data) is not None)
                else ""
            )
            return replace(
                base, reason="message digest mismatch: content altered after signing" + extra
            )
        signed_bytes = _signed_attributes_der(signer_info)
    else:
        signed_bytes = candidates  # no attributes: the signature covers the content itself
    problem = _check_signature(signer, signer_info, digest_name, signed_bytes)
    if problem:
        return replace(base, reason=problem)
    return _judge_chain(base, signer, embedded, _cms_crls(signed_data), ctx)


def _signed_attributes(signer_info: cms.SignerInfo) -> dict[str, object] | None:
    attrs = signer_info["signed_attrs"]
    if isinstance(attrs, asn1_core.Void) or not len(attrs):
        return None
    found: dict[str, object] = {}
    for attr in attrs:
        name = attr["type"].native
        # Only these three are read: parsing every attribute would choke on
        # the malformed S/MIME capabilities some clients send.
        if name in ("content_type", "message_digest", "signing_time"):
            values = attr["values"]
            found[name] = values[0].native if len(values) == 1 else None
    return found


def _signed_attributes_der(signer_info: cms.SignerInfo) -> Iterator[bytes]:
    """The signed attributes as the signer hashed them: a DER SET OF, not the [0] tag."""
    attrs = signer_info["signed_attrs"]
    original = b"\x31" + attrs.dump()[1:]
    yield original
    try:
        reencoded = cms.CMSAttributes(list(attrs)).dump(force=True)
    except (ValueError, TypeError):
        return  # an attribute we cannot re-encode: only the original bytes can match
    if reencoded != original:
        yield reencoded  # the sender used BER; the signature is over DER


def _content_forms(content: bytes) -> Iterator[bytes]:
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


def _digest(name: str, data: bytes) -> bytes:
    hasher = hashes.Hash(_DIGESTS[name]())
    hasher.update(data)
    return hasher.finalize()


def _check_signature(
    signer: x509.Certificate, signer_info: cms.SignerInfo, digest_name: str, forms: Iterable[bytes]
) -> str | None:
    """None when the signature verifies over one of `forms`, else the reason it does not."""
    algorithm = signer_info["signature_algorithm"]
    signature = signer_info["signature"].native
    try:
        scheme = algorithm.signature_algo
    except ValueError:
        return f"unsupported signature algorithm {algorithm['algorithm'].dotted}"
    try:
        hash_name = algorithm.hash_algo
    except ValueError:
        hash_name = digest_name  # rsaEncryption / bare ecdsa: the digest algorithm applies
    try:
        key = signer.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        return f"signer public key unreadable: {exc}"
    if hash_name not in _DIGESTS and not isinstance(key, ed25519.Ed25519PublicKey):
        return f"signature hash {hash_name} is not accepted"
    for data in forms:
        try:
            if isinstance(key, rsa.RSAPublicKey) and scheme == "rsassa_pss":
                params = algorithm["parameters"]
                pss_hash = _DIGESTS[params["hash_algorithm"]["algorithm"].native]()
                mgf_hash = _DIGESTS[
                    params["mask_gen_algorithm"]["parameters"]["algorithm"].native
                ]()
                pad = padding.PSS(padding.MGF1(mgf_hash), params["salt_length"].native)
                key.verify(signature, data, pad, pss_hash)
            elif isinstance(key, rsa.RSAPublicKey) and scheme == "rsassa_pkcs1v15":
                key.verify(signature, data, padding.PKCS1v15(), _DIGESTS[hash_name]())
            elif isinstance(key, ec.EllipticCurvePublicKey) and scheme == "ecdsa":
                key.verify(signature, data, ec.ECDSA(_DIGESTS[hash_name]()))
            elif isinstance(key, ed25519.Ed25519PublicKey) and scheme == "ed25519":
                key.verify(signature, data)
            else:
                return f"signature scheme {scheme} does not fit the signer's key"
            return None
        except InvalidSignature:
            continue
        except (KeyError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
            return f"signature parameters unusable: {exc}"
    return "signature does not verify with the signer's certificate"


# ── the signer and its chain ───────────────────────────────────────────────


def _find_signer(
    sid: cms.SignerIdentifier, pool: list[x509.Certificate]
) -> x509.Certificate | None:
    if sid.name == "subject_key_identifier":
        wanted = sid.chosen.native
        for cert in pool:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except (x509.ExtensionNotFound, ValueError):
                continue
            if ski.value.digest == wanted:
                return cert
        return None
    serial = sid.chosen["serial_number"].native
    issuer = sid.chosen["issuer"]
    for cert in pool:
        if cert.serial_number != serial:
            continue
        # Same bytes is the common case; otherwise asn1crypto compares names after
        # RFC 5280 normalisation, which survives re-encoding between CMS and certificate.
        if cert.issuer.public_bytes() == issuer.dump():
            return cert
        if asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER)).issuer == issuer:
            return cert
    return None


@dataclass(frozen=True)
class _SignerFacts:
    subject: str
    emails: tuple[str, ...]
    der: bytes
    usage_problem: str | None


# Keyed by the certificate, which hashes and compares by its DER: a pure
# function of the certificate's bytes, so a cached answer is always the answer.
@lru_cache(maxsize=CERTIFICATE_CACHE_SIZE)
def _signer_facts(signer: x509.Certificate) -> _SignerFacts:
    return _SignerFacts(
        _safe_name(signer.subject),
        _emails(signer),
        signer.public_bytes(Encoding.DER),
        _leaf_usage_problem(signer),
    )


def _with_signer(base: SmimeResult, signer: x509.Certificate, ctx: _Context) -> SmimeResult:
    facts = _signer_facts(signer)
    return replace(
        base,
        signer_subject=facts.subject,
        signer_emails=facts.emails,
        signer_certificate=facts.der,
        from_mismatch=bool(ctx.from_address) and ctx.from_address not in facts.emails,
    )


def _emails(cert: x509.Certificate) -> tuple[str, ...]:
    found: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        found.extend(san.value.get_values_for_type(x509.RFC822Name))
    except (x509.ExtensionNotFound, ValueError):
        pass
    try:
        for attr in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
            found.append(str(attr.value))
    except ValueError:
        pass
    return tuple(dict.fromkeys(e.strip().lower() for e in found))


def _safe_name(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()
    except ValueError:
        return repr(name)


@lru_cache(maxsize=CERTIFICATE_CACHE_SIZE)  # pure in the certificate's bytes, as above
def _short_name(cert: x509.Certificate) -> str:
    try:
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(cn[0].value) if cn else _safe_name(cert.subject)
    except ValueError:
        return _safe_name(cert.subject)


def _judge_chain(
    base: SmimeResult,
    signer: x509.Certificate,
    embedded: list[x509.Certificate],
    crls: list[x509.CertificateRevocationList],
    ctx: _Context,
) -> SmimeResult:
    if not ctx.anchors:
        return replace(
            base, status="untrusted", reason="signature valid; no trust anchors configured"
        )
    chain = _webpki_chain(signer, embedded, ctx)
    refusals: list[str] = []
    if chain is None:
        paths = list(_manual_paths(signer, embedded, ctx.anchors, refusals))
        if not paths:
            if signer.issuer == signer.subject and signer not in ctx.anchors:
                refusals.insert(0, "the signer certificate is self-signed")
            detail = "; ".join(dict.fromkeys(refusals)) or "no issuer found among the anchors"
            return replace(
                base,
                status="untrusted",
                reason=f"signature valid, but signer not chained to a configured anchor ({detail})",
            )
        chain = next((p for p in paths if _outside_validity(p, ctx.at) is None), paths[0])
        stale = _outside_validity(chain, ctx.at)
        if stale is not None:
            return replace(
                base,
                status="expired",
                reason=(
                    f"signature valid; certificate '{_short_name(stale)}' is not valid at "
                    f"{ctx.at:%Y-%m-%d %H:%M} UTC (valid {stale.not_valid_before_utc:%Y-%m-%d} to "
                    f"{stale.not_valid_after_utc:%Y-%m-%d})"
                ),
            )
    problem = _signer_facts(signer).usage_problem or _revocation_problem(chain, crls, ctx.at)
    if problem:
        return replace(base, status="untrusted", reason=f"signature valid, but {problem}")
    weak = "; SHA-1 digest (weak)" if base.weak_digest else ""
    return replace(
        base,
        status="valid",
        reason=f"signature valid; signer chained to '{_short_name(chain[-1])}'{weak}",
    )


# Chains cryptography's verifier built, by (signer, intermediates, anchors).
# Of its checks only validity depends on the time, so a cached chain is
# reused only when every certificate in it is valid at the new time; else the
# verifier runs again (and may find another path, or refuse). Revocation (the
# CRLs a message carries) and the leaf's usage are judged for every message.
_ChainKey = tuple[x509.Certificate, tuple[x509.Certificate, ...], tuple[x509.Certificate, ...]]
_chains: dict[_ChainKey, list[x509.Certificate]] = {}
_chains_lock = threading.Lock()


def _webpki_chain(
    signer: x509.Certificate, embedded: list[x509.Certificate], ctx: _Context
) -> list[x509.Certificate] | None:
    """The chain by cryptography's verifier, or None when its WebPKI CA rules refuse."""
    intermediates = tuple(c for c in embedded if c != signer)
    key = (signer, intermediates, ctx.anchors)
    cached = _chains.get(key)
    if cached is not None and _outside_validity(cached, ctx.at) is None:
        return list(cached)
    chain = _webpki_verify(signer, list(intermediates), ctx)
    if chain is not None:
        with _chains_lock:
            if len(_chains) >= CHAIN_CACHE_SIZE:
                _chains.clear()  # bounded; refilled by the senders still writing
            _chains[key] = chain
    return chain


def _webpki_verify(
    signer: x509.Certificate, intermediates: list[x509.Certificate], ctx: _Context
) -> list[x509.Certificate] | None:
    try:
        verifier = (
            PolicyBuilder()
            .store(Store(list(ctx.anchors)))
            .time(ctx.at)
            .max_chain_depth(MAX_CHAIN_DEPTH)
            # The EE policy is permissive because the default demands clientAuth;
            # the e-mail EKU is checked in _leaf_usage_problem.
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        return list(verifier.verify(signer, intermediates).chain)
    except (VerificationError, ValueError, TypeError) as exc:
        log.debug("WebPKI path refused, trying the plain path check: %s", exc)
        return None


def _manual_paths(
    leaf: x509.Certificate,
    embedded: list[x509.Certificate],
    anchors: tuple[x509.Certificate, ...],
    refusals: list[str],
) -> Iterator[list[x509.Certificate]]:
    """Paths leaf → anchor by name and signature, ignoring validity dates (judged after)."""
    anchor_set = set(anchors)
    by_subject: dict[x509.Name, list[x509.Certificate]] = {}
    for cert in [*anchors, *embedded]:  # anchors first: the shortest trusted path wins
        by_subject.setdefault(cert.subject, []).append(cert)
    budget = [MAX_PATH_SIGNATURE_CHECKS]

    def extend(path: list[x509.Certificate]) -> Iterator[list[x509.Certificate]]:
        cert = path[-1]
        if cert in anchor_set:
            yield path
            return
        if len(path) >= MAX_CHAIN_DEPTH:
            refusals.append(f"path longer than {MAX_CHAIN_DEPTH} certificates")
            return
        for issuer in by_subject.get(cert.issuer, []):
            if issuer in path:
                continue  # a loop of cross-signed certificates
            if budget[0] <= 0:
                refusals.append(f"gave up after {MAX_PATH_SIGNATURE_CHECKS} signature checks")
                return
            budget[0] -= 1
            problem = _issuer_problem(cert, issuer, len(path) - 1, issuer in anchor_set)
            if problem:
                refusals.append(f"'{_short_name(cert)}': {problem}")
                continue
            yield from extend([*path, issuer])

    if not by_subject.get(leaf.issuer) and leaf not in anchor_set:
        refusals.append(f"issuer '{_safe_name(leaf.issuer)}' is not among the anchors")
    yield from extend([leaf])


def _issuer_problem(
    cert: x509.Certificate, issuer: x509.Certificate, intermediates_below: int, is_anchor: bool
) -> str | None:
    try:
        try:
            cert.verify_directly_issued_by(issuer)
        except (UnsupportedAlgorithm, ValueError):
            # cryptography refuses SHA-1 certificate signatures outright
            _verify_legacy_issuance(cert, issuer)
    except InvalidSignature:
        return f"certificate signature failure (not signed by '{_short_name(issuer)}')"
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"issuer signature not checkable: {exc}"
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    except ValueError as exc:
        return f"issuer extensions unreadable: {exc}"
    # A configured anchor without basicConstraints (v1 roots) is trusted as
    # configured; an intermediate must say it is a CA.
    if constraints is None and not is_anchor and issuer.version != x509.Version.v1:
        return f"'{_short_name(issuer)}' is not a CA (no basicConstraints)"
    if constraints is not None:
        if not constraints.ca:
            return f"'{_short_name(issuer)}' is not a CA"
        if constraints.path_length is not None and intermediates_below > constraints.path_length:
            return f"'{_short_name(issuer)}' pathLenConstraint exceeded"
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            return f"'{_short_name(issuer)}' may not sign certificates (keyUsage)"
    except x509.ExtensionNotFound:
        pass
    return None


def _verify_legacy_issuance(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """Check a certificate signature that `verify_directly_issued_by` refuses to (SHA-1).

    Real S/MIME chains from before 2017 are SHA-1 signed; they are still worth
    judging at their signing time. Raises InvalidSignature or ValueError.
    """
    if cert.issuer != issuer.subject:
        raise ValueError("issuer name does not match")
    key = issuer.public_key()
    hash_algorithm = cert.signature_hash_algorithm
    params = cert.signature_algorithm_parameters
    if isinstance(key, rsa.RSAPublicKey) and isinstance(params, padding.PSS | padding.PKCS1v15):
        key.verify(cert.signature, cert.tbs_certificate_bytes, params, hash_algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
        key.verify(cert.signature, cert.tbs_certificate_bytes, params)
    else:
        raise ValueError(f"unsupported issuer key or signature ({type(key).__name__})")


def _outside_validity(path: list[x509.Certificate], at: datetime) -> x509.Certificate | None:
    for cert in path:
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            return cert
    return None


def _leaf_usage_problem(signer: x509.Certificate) -> str | None:
    try:
        eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        allowed = {ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
        if not allowed & set(eku):
            return "the signer certificate is not for e-mail protection (extendedKeyUsage)"
    except x509.ExtensionNotFound:
        pass
    try:
        usage = signer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (usage.digital_signature or usage.content_commitment):
            return "the signer certificate may not sign (keyUsage)"
    except x509.ExtensionNotFound:
        pass
    return None


def _revocation_problem(
    chain: list[x509.Certificate], crls: list[x509.CertificateRevocationList], at: datetime
) -> str | None:
    """Revocation per CRLs carried in the message itself; we never fetch CRLs (no network)."""
    for cert, issuer in itertools.pairwise(chain):
        for crl in crls:
            if crl.issuer != issuer.subject:
                continue
            try:
                if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                    continue
            except (TypeError, ValueError, UnsupportedAlgorithm):
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is not None and entry.revocation_date_utc <= at:
                return (
                    f"certificate '{_short_name(cert)}' was revoked on "
                    f"{entry.revocation_date_utc:%Y-%m-%d} (CRL carried in the message)"
                )
    return None


# ── certificate loading helpers ────────────────────────────────────────────


def _first_der_element(der: bytes) -> bytes:
    """The first DER TLV of `der` (drops OpenSSL's trailing trust data)."""
    return asn1_core.Asn1Value.load(der, strict=False).dump()


def _certificates_from_pkcs7(der: bytes) -> list[x509.Certificate]:
    try:
        with warnings.catch_warnings():
            # cryptography warns before its own BER fallback; the BER bundle is legitimate
            warnings.simplefilter("ignore", UserWarning)
            return pkcs7.load_der_pkcs7_certificates(der)
    except ValueError:
        pass
    # BER indefinite-length bundles (seen in the wild) are refused above; asn1crypto reads BER.
    content_info = cms.ContentInfo.load(der)
    if content_info["content_type"].native != "signed_data":
        raise ValueError("PKCS#7 bundle is not signed-data")
    return _cms_certificates_unbounded(content_info["content"])


def _cms_certificates_unbounded(signed_data: cms.SignedData) -> list[x509.Certificate]:
    choices = signed_data["certificates"]
    if isinstance(choices, asn1_core.Void):
        return []
    return [
        x509.load_der_x509_certificate(c.chosen.dump()) for c in choices if c.name == "certificate"
    ]
