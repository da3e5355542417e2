"""S/MIME-sign an outgoing MIME message (detached, multipart/signed), keeping its envelope headers.

The message's content headers (Content-*) and body become the signed first
part; every other top-level header (From, To, Subject, Message-ID, Date, …)
stays on the outer multipart/signed entity, where mail clients look for it.
Pure: bytes in, bytes out; cryptography's `PKCS7SignatureBuilder` does the CMS.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.message import Message
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

Digest = Literal["sha256", "sha384", "sha512"]

_DIGESTS: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE_BREAK = re.compile(rb"\r?\n")
# RFC 5322's hard limit on a line; longer lines get rewrapped by relays,
# which breaks the signature at the recipient.
MAX_LINE_OCTETS = 998
_DEFAULT_CONTENT_TYPE = b"Content-Type: text/plain; charset=us-ascii"


def sign_message(
    message: bytes | Message,
    *,
    certificate: x509.Certificate,
    private_key: pkcs7.PKCS7PrivateKeyTypes,
    chain: Sequence[x509.Certificate] = (),
    digest: Digest = "sha256",
    rsa_pss: bool = False,
) -> bytes:
    """The message as multipart/signed (CRLF line ends), signed by `certificate`.

    `chain` (intermediates) travels in the signature so recipients can build
    the path. Raises ValueError for content that relays may alter in transit
    (8-bit bytes, over-long lines): transfer-encode it (quoted-printable or
    base64) before signing.
    """
    raw = message if isinstance(message, bytes) else message.as_bytes()
    outer_fields, inner_fields, body = _split(raw)
    _check_transport_safe(body)
    if not any(f.lower().startswith(b"content-type:") for f in inner_fields):
        inner_fields.insert(0, _DEFAULT_CONTENT_TYPE)
    # Canonical CRLF form is what the recipient hashes; signing it exactly
    # (Binary: no second conversion) makes the signed part byte-identical to it.
    inner = b"\r\n".join(inner_fields) + b"\r\n\r\n" + _LINE_BREAK.sub(b"\r\n", body)

    hash_algorithm = _DIGESTS[digest]()
    rsa_padding = None
    if rsa_pss:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ValueError("RSA-PSS needs an RSA key")
        rsa_padding = padding.PSS(padding.MGF1(hash_algorithm), padding.PSS.DIGEST_LENGTH)
    builder = pkcs7.PKCS7SignatureBuilder().set_data(inner)
    builder = builder.add_signer(certificate, private_key, hash_algorithm, rsa_padding=rsa_padding)
    for cert in chain:
        builder = builder.add_certificate(cert)
    signed = builder.sign(
        Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]
    )
    signed = _LINE_BREAK.sub(b"\r\n", signed)
    return b"".join(f + b"\r\n" for f in outer_fields) + signed


def _split(raw: bytes) -> tuple[list[bytes], list[bytes], bytes]:
    """(outer header fields, content header fields, body); folded fields stay whole."""
    end = _HEADER_END.search(raw)
    header_block, body = (raw[: end.start()], raw[end.end() :]) if end else (raw, b"")
    fields: list[bytes] = []
    for line in _LINE_BREAK.split(header_block):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        elif line:
            fields.append(line)
    outer, inner = [], []
    for field in fields:
        name = field.split(b":", 1)[0].strip().lower()
        if name.startswith(b"content-"):
            inner.append(field)
        elif name != b"mime-version":  # the signed wrapper carries its own MIME-Version
            outer.append(field)
    return outer, inner, body


def _check_transport_safe(body: bytes) -> None:
    if not body.isascii():
        raise ValueError(
            "8-bit content must be transfer-encoded (quoted-printable or base64) before "
            "signing: relays may convert it and break the signature"
        )
    longest = max((len(line) for line in _LINE_BREAK.split(body)), default=0)
    if longest > MAX_LINE_OCTETS:
        raise ValueError(f"a body line has {longest} octets, over the limit of {MAX_LINE_OCTETS}")
