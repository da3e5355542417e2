"""The certificates and keys the config names, loaded once: anchors, staff, roots, our own keys."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from bot.config import Config
from bot.errors import ConfigError
from bot.parse import CERTIFICATE_ERRORS


def load_certificate_file(path: Path) -> list[x509.Certificate]:
    """PEM (text around the blocks is ignored), DER, or a PKCS#7 bundle of either."""
    from cryptography.hazmat.primitives.serialization import pkcs7

    data = path.read_bytes()
    loaders = (
        x509.load_pem_x509_certificates,
        lambda d: [x509.load_der_x509_certificate(d)],
        pkcs7.load_pem_pkcs7_certificates,
        pkcs7.load_der_pkcs7_certificates,
    )
    for loader in loaders:
        try:
            certs = loader(data)
        except CERTIFICATE_ERRORS:
            continue
        if certs:
            return list(certs)
    raise ConfigError(f"{path}: no certificate could be read (PEM, DER or PKCS#7 expected)")


@dataclass(frozen=True)
class Root:
    name: str  # subject CN, else the whole subject
    sha256: str  # lower hex of the DER
    subject: str


@dataclass(frozen=True)
class Trust:
    ca_anchors: dict[str, tuple[x509.Certificate, ...]] = field(default_factory=dict)
    staff: tuple[x509.Certificate, ...] = ()
    roots: dict[str, tuple[Root, ...]] = field(default_factory=dict)
    # [outgoing] decryption_key/_certificate: opens mail CAs encrypt to the program.
    decryption_key: PrivateKeyTypes | None = None
    decryption_certificate: x509.Certificate | None = None
    # [outgoing] signing_key/_certificate: signs every mail we send. The
    # certificate file's first certificate is ours; any others are its chain.
    signing_key: PrivateKeyTypes | None = None
    signing_certificate: x509.Certificate | None = None
    signing_chain: tuple[x509.Certificate, ...] = ()


def _root(cert: x509.Certificate) -> Root:
    from cryptography.hazmat.primitives.serialization import Encoding

    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    subject = cert.subject.rfc4514_string()
    name = str(cns[0].value) if cns else subject
    return Root(name=name, sha256=hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest(),
                subject=subject)


def load_private_key(path: Path) -> PrivateKeyTypes:
    """An unencrypted private key in PEM (PKCS#8 or traditional) or DER."""
    from cryptography.hazmat.primitives.serialization import (
        load_der_private_key,
        load_pem_private_key,
    )

    data = path.read_bytes()
    try:
        if b"-----BEGIN" in data:
            return load_pem_private_key(data, password=None)
        return load_der_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: no unencrypted private key could be read: {exc}") from exc


def _key_pair(key: Path | None, certificate: Path | None, what: str
              ) -> tuple[PrivateKeyTypes | None, list[x509.Certificate]]:
    if key is None and certificate is None:
        return None, []
    if key is None or certificate is None:
        raise ConfigError(f"[outgoing] {what}_key and {what}_certificate must be set together")
    return load_private_key(key), load_certificate_file(certificate)


def load_trust(config: Config) -> Trust:
    out = config.outgoing
    decryption_key, decryption_certs = _key_pair(out.decryption_key,
                                                 out.decryption_certificate, "decryption")
    signing_key, signing_certs = _key_pair(out.signing_key, out.signing_certificate, "signing")
    return Trust(
        decryption_key=decryption_key,
        decryption_certificate=decryption_certs[0] if decryption_certs else None,
        signing_key=signing_key,
        signing_certificate=signing_certs[0] if signing_certs else None,
        signing_chain=tuple(signing_certs[1:]),
        ca_anchors={ca.name: tuple(c for p in ca.smime_anchors for c in load_certificate_file(p))
                    for ca in config.cas},
        staff=tuple(c for p in config.staff.certificates for c in load_certificate_file(p)),
        roots={ca.name: tuple(_root(c) for p in ca.roots for c in load_certificate_file(p))
               for ca in config.cas},
    )
