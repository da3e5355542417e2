"""The typed values the S/MIME modules pass between them: the result, the context, the refusal.

Kept apart so that locating, CMS reading and chain judging can all speak them
without importing one another's work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

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
    content: bytes | None = None
    certificates: tuple[bytes, ...] = ()


class Refused(Exception):
    """The S/MIME structure is broken or over a limit; the text becomes the `invalid` reason."""


@dataclass(frozen=True)
class Context:
    anchors: tuple[x509.Certificate, ...]
    at: datetime
    from_address: str | None
    decryption_key: PrivateKeyTypes | None
    decryption_certificate: x509.Certificate | None
