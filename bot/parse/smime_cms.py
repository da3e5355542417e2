"""Read a CMS SignedData and check each signer's signature and signed attributes.

asn1crypto reads the structures; cryptography does every digest and signature
check. The signer's certificate is judged (chain, usage, revocation) by
`smime_chain` once its signature holds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import replace

from asn1crypto import cms
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from bot.parse.smime_chain import judge_chain, with_signer
from bot.parse.smime_locate import content_forms
from bot.parse.smime_types import Context, Refused, SmimeResult

log = logging.getLogger("rootnotify.parse.smime")

# Limits on hostile input. Real messages stay far below each one.
# A signature carries its chain: 2–5 certificates. Thousands is an attack on our CPU.
MAX_CMS_CERTIFICATES = 64
# CRLs carried in the CMS (PKITS carries one or two).
MAX_CMS_CRLS = 16
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


def load_content_info(der: bytes) -> cms.ContentInfo:
    try:
        content_info = cms.ContentInfo.load(der)
        content_info["content_type"].native  # noqa: B018 - forces the lazy parse here
    except (ValueError, TypeError) as exc:
        raise Refused(f"not a CMS structure: {exc}") from exc
    return content_info


def load_signed_data(der: bytes) -> cms.SignedData:
    content_info = load_content_info(der)
    if content_info["content_type"].native != "signed_data":
        raise Refused(
            f"signature part holds {content_info['content_type'].native}, not signed-data"
        )
    return content_info["content"]


def encapsulated_content(signed_data: cms.SignedData) -> bytes | None:
    content = signed_data["encap_content_info"]["content"]
    if isinstance(content, asn1_core.Void):
        return None
    value = content.native
    return value if isinstance(value, bytes) else content.contents


def cms_certificates(signed_data: cms.SignedData) -> list[x509.Certificate]:
    choices = signed_data["certificates"]
    if isinstance(choices, asn1_core.Void):
        return []
    if len(choices) > MAX_CMS_CERTIFICATES:
        raise Refused(
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


def verify_signed_data(
    signed_data: cms.SignedData, content: bytes, ctx: Context, *, detached: bool
) -> SmimeResult:
    embedded = cms_certificates(signed_data)
    certificates = tuple(c.public_bytes(Encoding.DER) for c in embedded)
    signer_infos = signed_data["signer_infos"]
    if not 0 < len(signer_infos) <= MAX_SIGNER_INFOS:
        raise Refused(f"{len(signer_infos)} signers; expected 1 to {MAX_SIGNER_INFOS}")
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
    ctx: Context,
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
    base = with_signer(base, signer, ctx)

    candidates = content_forms(content)
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
                if detached and (encapsulated_content(signed_data) is not None)
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
    return judge_chain(base, signer, embedded, _cms_crls(signed_data), ctx)


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
