"""Read a CMS SignedData and check each signer's signature and signed attributes.

asn1crypto reads the structures; cryptography does every digest and signature
check. The signer's certificate is judged (chain, usage, revocation) by
`smime_chain` once its signature holds.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import lru_cache
from typing import TypeVar

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

from bot.parse import CERTIFICATE_ERRORS
from bot.parse.smime.chain import CERTIFICATE_CACHE_SIZE, judge_chain, with_signer
from bot.parse.smime.locate import content_forms
from bot.parse.smime.stream import form_digests, is_large
from bot.parse.smime.values import (
    Context,
    Refused,
    SignedFields,
    SignerFields,
    SignerId,
    SmimeResult,
)

log = logging.getLogger("rootnotify.parse.smime")

# Messages have one signer, rarely two (dual RSA/EC signatures).
MAX_SIGNER_INFOS = 4

_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# SHA-1 still appears in real S/MIME from older clients; accepted but flagged.
_WEAK_DIGESTS = frozenset({"sha1"})


T = TypeVar("T")


def _load_each(ders: Iterable[bytes], load: Callable[[bytes], T], what: str) -> list[T]:
    """Each DER item that loads; an unreadable one is skipped (and logged), not fatal."""
    loaded = []
    for der in ders:
        try:
            loaded.append(load(der))
        except CERTIFICATE_ERRORS as exc:
            log.info("unreadable %s in CMS skipped: %s", what, exc)
    return loaded


def cms_certificates(signed: SignedFields) -> list[x509.Certificate]:
    return _load_each(signed.certificates(), x509.load_der_x509_certificate, "certificate")


def _cms_crls(signed: SignedFields) -> list[x509.CertificateRevocationList]:
    return _load_each(signed.crls(), x509.load_der_x509_crl, "CRL")


def verify_signed_data(
    signed: SignedFields, content: bytes | memoryview, ctx: Context, *, detached: bool
) -> SmimeResult:
    embedded = cms_certificates(signed)
    certificates = tuple(c.public_bytes(Encoding.DER) for c in embedded)
    signer_infos = signed.signers()
    if not 0 < len(signer_infos) <= MAX_SIGNER_INFOS:
        raise Refused(f"{len(signer_infos)} signers; expected 1 to {MAX_SIGNER_INFOS}")
    results = [
        _verify_signer(si, signed, content, embedded, ctx, detached=detached) for si in signer_infos
    ]
    # Every signer must hold (as openssl does); report the worst one.
    rank = {"invalid": 0, "untrusted": 1, "expired": 2, "valid": 3}
    worst = min(results, key=lambda r: rank.get(r.status, 0))
    digests = tuple(hashlib.sha256(si.signature()).hexdigest() for si in signer_infos)
    return replace(worst, certificates=certificates, content=content, signature_digests=digests)


def _verify_signer(
    signer_info: SignerFields,
    signed: SignedFields,
    content: bytes | memoryview,
    embedded: list[x509.Certificate],
    ctx: Context,
    *,
    detached: bool,
) -> SmimeResult:
    digest_name = signer_info.digest_name()
    if digest_name not in _DIGESTS:
        return SmimeResult("invalid", f"digest algorithm {digest_name} is not accepted")
    base = SmimeResult(
        "invalid", "", digest_algorithm=digest_name, weak_digest=digest_name in _WEAK_DIGESTS
    )
    attrs = signer_info.attributes()
    if attrs is not None:
        base = replace(base, signing_time=attrs.get("signing_time"))
    signer = _find_signer(signer_info.signer_id(), [*embedded, *ctx.anchors])
    if signer is None:
        return replace(base, status="untrusted", reason="signer certificate not found")
    base = with_signer(base, signer, ctx)

    if attrs is not None:
        if "content_type" not in attrs:
            return replace(base, reason="contentType attribute missing from the signed attributes")
        wanted = attrs.get("message_digest")
        if not isinstance(wanted, bytes):
            return replace(
                base, reason="messageDigest attribute missing from the signed attributes"
            )
        if not _digest_matches(digest_name, content, wanted):
            extra = (
                " (its embedded copy of the content is ignored)"
                if detached and signed.has_content()
                else ""
            )
            return replace(
                base, reason="message digest mismatch: content altered after signing" + extra
            )
        signed_bytes = signer_info.attributes_der()
    else:
        # No attributes: the signature covers the content itself (rare; whole forms).
        signed_bytes = content_forms(bytes(content))
    problem = _check_signature(signer, signer_info, digest_name, signed_bytes)
    if problem:
        return replace(base, reason=problem)
    return judge_chain(base, signer, embedded, _cms_crls(signed), ctx)


def _digest_matches(name: str, content: bytes | memoryview, wanted: bytes) -> bool:
    """Whether one form of `content` (as given, canonical CRLF) hashes to `wanted`."""
    if is_large(content):  # hashed in place, slice by slice: no whole copies
        return wanted in form_digests(content, _DIGESTS[name]())
    return any(_digest(name, form) == wanted for form in content_forms(bytes(content)))


def _digest(name: str, data: bytes) -> bytes:
    hasher = hashes.Hash(_DIGESTS[name]())
    hasher.update(data)
    return hasher.finalize()


def _check_signature(
    signer: x509.Certificate, signer_info: SignerFields, digest_name: str, forms: Iterable[bytes]
) -> str | None:
    """None when the signature verifies over one of `forms`, else the reason it does not."""
    signature = signer_info.signature()
    algorithm = signer_info.scheme()
    scheme = algorithm.name
    if scheme is None:
        return f"unsupported signature algorithm {algorithm.dotted}"
    # rsaEncryption / bare ecdsa name no hash: the digest algorithm applies
    hash_name = algorithm.hash_name or digest_name
    try:
        key = _public_key(signer)
    except (ValueError, UnsupportedAlgorithm) as exc:
        return f"signer public key unreadable: {exc}"
    if hash_name not in _DIGESTS and not isinstance(key, ed25519.Ed25519PublicKey):
        return f"signature hash {hash_name} is not accepted"
    for data in forms:
        try:
            if isinstance(key, rsa.RSAPublicKey) and scheme == "rsassa_pss":
                pss_hash_name, mgf_hash_name, salt_length = signer_info.pss_parameters()
                pss_hash = _DIGESTS[pss_hash_name]()
                mgf_hash = _DIGESTS[mgf_hash_name]()
                pad = padding.PSS(padding.MGF1(mgf_hash), salt_length)
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


# Both pure in the certificate's bytes (a certificate hashes and compares by
# its DER), so a cached answer is always the answer; a sender signs many
# messages with one certificate, and each costs ~5-10 µs to derive again.
@lru_cache(maxsize=CERTIFICATE_CACHE_SIZE)
def _public_key(cert: x509.Certificate) -> CertificatePublicKeyTypes:
    return cert.public_key()


@lru_cache(maxsize=CERTIFICATE_CACHE_SIZE)
def _issuer_der(cert: x509.Certificate) -> bytes:
    return cert.issuer.public_bytes()


def _find_signer(sid: SignerId, pool: list[x509.Certificate]) -> x509.Certificate | None:
    if sid.key_identifier is not None:
        for cert in pool:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except (x509.ExtensionNotFound, ValueError):
                continue
            if ski.value.digest == sid.key_identifier:
                return cert
        return None
    issuer: asn1_x509.Name | None = None
    for cert in pool:
        if cert.serial_number != sid.serial:
            continue
        # Same bytes is the common case; otherwise asn1crypto compares names after
        # RFC 5280 normalisation, which survives re-encoding between CMS and certificate.
        if _issuer_der(cert) == sid.issuer:
            return cert
        if issuer is None:
            issuer = asn1_x509.Name.load(sid.issuer)
        if asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER)).issuer == issuer:
            return cert
    return None
