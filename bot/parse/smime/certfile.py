"""Read trust anchors and certificate bundles: PEM, DER or PKCS#7 (BER too), into certificates."""

from __future__ import annotations

import base64
import binascii
import re
import warnings
from pathlib import Path

from asn1crypto import cms
from asn1crypto import core as asn1_core
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from bot.parse import CERTIFICATE_ERRORS

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)
_PEM_CERT_LABELS = frozenset({b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"})
_PEM_PKCS7_LABELS = frozenset({b"PKCS7", b"PKCS #7 SIGNED DATA", b"CMS"})


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
            except (*CERTIFICATE_ERRORS, binascii.Error) as exc:
                raise ValueError(f"PEM block {number} ({label.decode()}) is broken: {exc}") from exc
        if not certs:
            raise ValueError("no certificate found in the PEM text")
        return certs
    try:
        return [x509.load_der_x509_certificate(data)]
    except CERTIFICATE_ERRORS:
        pass
    try:
        certs = _certificates_from_pkcs7(data)
    except CERTIFICATE_ERRORS as exc:
        raise ValueError("neither PEM, a DER certificate nor a PKCS#7 bundle") from exc
    if not certs:
        raise ValueError("the PKCS#7 bundle holds no certificate")
    return certs


def _first_der_element(der: bytes) -> bytes:
    """The first DER TLV of `der` (drops OpenSSL's trailing trust data)."""
    return asn1_core.Asn1Value.load(der, strict=False).dump()


def _certificates_from_pkcs7(der: bytes) -> list[x509.Certificate]:
    try:
        with warnings.catch_warnings():
            # cryptography warns before its own BER fallback; the BER bundle is legitimate
            warnings.simplefilter("ignore", UserWarning)
            return pkcs7.load_der_pkcs7_certificates(der)
    except CERTIFICATE_ERRORS:
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
