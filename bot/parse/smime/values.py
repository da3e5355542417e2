"""The typed values the S/MIME modules pass between them: result, context, refusal, CMS fields.

Kept apart so that locating, CMS reading and chain judging can all speak them
without importing one another's work. `SignedFields` and `SignerFields` are
what verification reads from a SignedData: two readers provide them, a strict
DER one for the common case (`smime_der`) and asn1crypto for everything else
(`smime_asn1`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

SmimeStatus = Literal["valid", "invalid", "untrusted", "expired", "unsigned", "encrypted"]


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
    # The signed content; from stream.STREAM_MIN_BYTES on a view into
    # the message verified rather than a copy (a list mail's is ~100 MB).
    content: bytes | memoryview | None = None
    certificates: tuple[bytes, ...] = ()
    # SHA-256 (hex) of each signer's SignatureValue: what makes this signature
    # this one, so a second mail carrying it can be told apart as a replay.
    signature_digests: tuple[str, ...] = ()
    # Where a large `content` lies in the raw message given to verify_message,
    # (start, end), when it is a slice of it: the caller parses it there.
    content_span: tuple[int, int] | None = None


class Refused(Exception):
    """The S/MIME structure is broken or over a limit; the text becomes the `invalid` reason."""


@dataclass(frozen=True)
class Context:
    anchors: tuple[x509.Certificate, ...]
    at: datetime
    from_address: str | None
    decryption_key: PrivateKeyTypes | None
    decryption_certificate: x509.Certificate | None


@dataclass(frozen=True)
class SignerId:
    """Which certificate signed: by subjectKeyIdentifier, or by issuer name (its DER) and serial."""

    key_identifier: bytes | None = None
    issuer: bytes = b""
    serial: int = 0


@dataclass(frozen=True)
class SignatureScheme:
    """A signatureAlgorithm in asn1crypto's words, the names the checks are written in."""

    name: str | None  # "rsassa_pkcs1v15", "rsassa_pss", "ecdsa", "ed25519"; None: unknown
    hash_name: str | None  # None: the algorithm names no hash (rsaEncryption, bare ecdsa)
    dotted: str


class SignerFields(Protocol):
    """What verification reads from one SignerInfo; each method reads when called."""

    def digest_name(self) -> str: ...

    def attributes(self) -> dict[str, object] | None:
        """contentType, messageDigest, signingTime by asn1crypto name; None without any."""
        ...

    def attributes_der(self) -> Iterator[bytes]:
        """The signed attributes as a DER SET OF, as received, then re-encoded if that differs."""
        ...

    def signer_id(self) -> SignerId: ...

    def scheme(self) -> SignatureScheme: ...

    def pss_parameters(self) -> tuple[str, str, int]:
        """RSASSA-PSS (hash name, MGF1 hash name, salt length); raises when unreadable."""
        ...

    def signature(self) -> bytes: ...


class SignedFields(Protocol):
    """What verification reads from a SignedData."""

    def certificates(self) -> list[bytes]:
        """DER of each certificate carried; raises Refused over MAX_CMS_CERTIFICATES."""
        ...

    def crls(self) -> list[bytes]:
        """DER of the first MAX_CMS_CRLS CRLs carried."""
        ...

    def signers(self) -> Sequence[SignerFields]: ...

    def has_content(self) -> bool: ...
