"""Verify or open the S/MIME layer of a raw message and say what it proves, as a typed result.

Pure: bytes in, `SmimeResult` out. No storage, no network, no wall clock (the
validation time is a parameter), and never an exception on hostile input.
This module is the public entry and the flow; the work is in its neighbours:

    verify_message(raw) ─ smime_locate: find the S/MIME entity (top level or inside multipart/*)
      ├─ multipart/signed ─ content = exact bytes of part 1, CMS from part 2 (a large part 1
    │                     stays a view into `raw`, hashed in place: smime.stream)
      ├─ application/pkcs7-mime signed-data ─ content = eContent
      ├─ application/pkcs7-mime enveloped-data ─ decrypt, verify the inner entity
      └─ nothing ─ "unsigned"
    signed ─ smime_der (strict DER, the usual case) or smime_asn1 (anything else): the fields
           ─ smime_cms: signer cert (CMS certs + anchors), signature, messageDigest
           ─ smime_chain: path to the anchors, usage, revocation
    load_certificates ─ smime_certfile: anchors from PEM, DER or PKCS#7

cryptography has no CMS verification API, so the work is split: asn1crypto
reads the CMS structures; cryptography does every digest, signature and
certificate-path check.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from bot.parse.smime.asn1 import (
    MAX_CMS_CERTIFICATES,
    Asn1Signed,
    encapsulated_content,
    load_content_info,
    load_signed_data,
)
from bot.parse.smime.certfile import load_certificates
from bot.parse.smime.cms import cms_certificates, verify_signed_data
from bot.parse.smime.der import read_signed_data
from bot.parse.smime.locate import (
    SIGNATURE_TYPES,
    Entity,
    decode_body,
    find_smime,
    looks_like_smime,
    multipart_spans,
    parse_entity,
)
from bot.parse.smime.stream import STREAM_MIN_BYTES, is_large
from bot.parse.smime.values import Context, Refused, SmimeResult, SmimeStatus

__all__ = [
    "MAX_CMS_CERTIFICATES",
    "MAX_SMIME_LAYERS",
    "SmimeResult",
    "SmimeStatus",
    "load_certificates",
    "verify_message",
]

log = logging.getLogger("rootnotify.parse.smime")

# Layers of encrypt/sign wrapping opened (signed inside encrypted inside …).
MAX_SMIME_LAYERS = 4


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
    ctx = Context(
        anchors=tuple(anchors),
        at=at if at.tzinfo else at.replace(tzinfo=UTC),
        from_address=from_address.strip().lower() if from_address else None,
        decryption_key=decryption_key,
        decryption_certificate=decryption_certificate,
    )
    try:
        return _verify(raw, ctx, layer=0)
    except Refused as refused:
        return SmimeResult("invalid", str(refused))
    except Exception as exc:  # the promise to callers: hostile input never raises
        log.warning("S/MIME structure unreadable: %s: %s", type(exc).__name__, exc)
        return SmimeResult("invalid", f"unreadable S/MIME structure ({type(exc).__name__}: {exc})")


def _verify(raw: bytes, ctx: Context, layer: int) -> SmimeResult:
    found = find_smime(raw)
    if found is None:
        return SmimeResult("unsigned", "no S/MIME signature or encryption found")
    kind, entity, depth = found
    nested = (
        "; the signed part sits inside a multipart, other parts are not covered" if depth else ""
    )
    if kind == "signed":
        boundary = entity.param("boundary")
        spans = multipart_spans(entity, boundary) if boundary else []
        if len(spans) < 2:
            raise Refused("multipart/signed without its two parts")
        signature_entity = parse_entity(entity.raw[spans[1][0]:spans[1][1]])
        protocol = entity.param("protocol").lower()
        if protocol not in SIGNATURE_TYPES and signature_entity.content_type not in SIGNATURE_TYPES:
            return SmimeResult(
                "unsigned", f"multipart/signed with protocol {protocol!r} is not S/MIME"
            )
        der = decode_body(signature_entity)
        # The strict DER reader reads the usual signature; anything else goes to asn1crypto.
        signed = read_signed_data(der) or Asn1Signed(load_signed_data(der))
        result = verify_signed_data(signed, _signed_part(entity, spans[0]), ctx, detached=True)
        if is_large(result.content or b"") and entity.raw is raw:
            result = replace(result, content_span=spans[0])
    else:
        der = decode_body(entity)
        content_info = load_content_info(der)
        ctype = content_info["content_type"].native
        if ctype == "enveloped_data":
            return _open_enveloped(der, ctx, layer)
        if ctype != "signed_data":
            raise Refused(f"unsupported CMS content type {ctype!r}")
        signed_data = content_info["content"]
        content = encapsulated_content(signed_data)
        if not len(signed_data["signer_infos"]):
            certs = cms_certificates(Asn1Signed(signed_data))
            return SmimeResult(
                "unsigned",
                f"certs-only S/MIME ({len(certs)} certificates), no signature",
                certificates=tuple(c.public_bytes(Encoding.DER) for c in certs),
            )
        if content is None:
            raise Refused("opaque signed-data carries no content")
        result = verify_signed_data(Asn1Signed(signed_data), content, ctx, detached=False)
    if result.content is not None and looks_like_smime(result.content):
        nested += "; the signed content is itself S/MIME (inner layer not verified here)"
    return replace(result, reason=result.reason + nested) if nested else result


def _signed_part(entity: Entity, span: tuple[int, int]) -> bytes | memoryview:
    """The first part's exact bytes; a large one as a view into the message, not a copy."""
    start, end = span
    if end - start >= STREAM_MIN_BYTES:
        return memoryview(entity.raw)[start:end]
    return entity.raw[start:end]


def _open_enveloped(der: bytes, ctx: Context, layer: int) -> SmimeResult:
    if ctx.decryption_key is None or ctx.decryption_certificate is None:
        return SmimeResult("encrypted", "encrypted (enveloped-data); no decryption key configured")
    try:
        inner = pkcs7.pkcs7_decrypt_der(der, ctx.decryption_certificate, ctx.decryption_key, [])
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return SmimeResult("encrypted", f"encrypted (enveloped-data); could not decrypt: {exc}")
    if layer + 1 >= MAX_SMIME_LAYERS:
        raise Refused(f"more than {MAX_SMIME_LAYERS} nested S/MIME layers")
    result = _verify(inner, ctx, layer + 1)
    if result.status == "unsigned":
        return replace(result, reason="decrypted; the content is not signed", content=inner)
    return replace(result, reason="decrypted; " + result.reason)
