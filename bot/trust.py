"""The certificates the config names, loaded once: CA anchors, staff certificates, roots."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from bot.config import Config
from bot.errors import ConfigError


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
        except ValueError:
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


def _root(cert: x509.Certificate) -> Root:
    from cryptography.hazmat.primitives.serialization import Encoding

    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    subject = cert.subject.rfc4514_string()
    name = str(cns[0].value) if cns else subject
    return Root(name=name, sha256=hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest(),
                subject=subject)


def load_trust(config: Config) -> Trust:
    return Trust(
        ca_anchors={ca.name: tuple(c for p in ca.smime_anchors for c in load_certificate_file(p))
                    for ca in config.cas},
        staff=tuple(c for p in config.staff.certificates for c in load_certificate_file(p)),
        roots={ca.name: tuple(_root(c) for p in ca.roots for c in load_certificate_file(p))
               for ca in config.cas},
    )
