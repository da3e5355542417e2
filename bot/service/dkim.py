"""Whether a raw message carries a passing DKIM signature for a given domain (dkimpy).

The DNS lookup is a parameter (dkimpy's `dnsfunc`), so this module does no
I/O of its own: the caller passes the real resolver or, in tests, a table.
Never raises on hostile input.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import dkim

log = logging.getLogger("rootnotify.parse.dkim")

DnsFunc = Callable[..., bytes | None]

# Real mail carries one to three DKIM signatures (author, ESP, list); more
# than this is an attempt to make us do many DNS lookups and RSA checks.
MAX_SIGNATURES = 5

# Headers a signature must cover for a command to count: the Subject carries
# the incident's tag, the Message-ID makes a copy with another thread visible.
# A signature over the body alone could be moved to any thread.
REQUIRED_HEADERS = (b"subject", b"message-id")


@dataclass(frozen=True)
class DkimVerdict:
    passed: bool
    reason: str
    # Of the passing signature: SHA-256 (hex) of its b= value, and its t= time.
    signature_digest: str | None = None
    signed_at: datetime | None = None


def _aligned(signing_domain: str, domain: str) -> bool:
    """Relaxed alignment (as DMARC): d= is the domain or one of its parents."""
    return domain == signing_domain or domain.endswith("." + signing_domain)


def dkim_verdict(raw: bytes, domain: str, dnsfunc: DnsFunc) -> DkimVerdict:
    """Pass when a signature verifies and its d= aligns with `domain` (the sender's)."""
    domain = domain.strip().lower().rstrip(".")
    try:
        checker = dkim.DKIM(raw)
        count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    except Exception as exc:  # unparseable mail is a failed check, never a crash
        return DkimVerdict(False, f"message unreadable for DKIM ({type(exc).__name__})")
    if count == 0:
        return DkimVerdict(False, "no DKIM signature")
    reasons: list[str] = []
    for idx in range(min(count, MAX_SIGNATURES)):
        try:
            ok = checker.verify(idx, dnsfunc=dnsfunc)
        except Exception as exc:
            reasons.append(f"signature {idx + 1}: {type(exc).__name__}: {exc}")
            continue
        signer = (checker.domain or b"").decode("ascii", "replace").lower()
        if not ok:
            reasons.append(f"signature {idx + 1} (d={signer or '?'}) does not verify")
        elif not _aligned(signer, domain):
            reasons.append(f"signature {idx + 1} is by d={signer}, not {domain}")
        elif missing := [h.decode() for h in REQUIRED_HEADERS
                         if h not in checker.include_headers]:
            reasons.append(f"signature {idx + 1} (d={signer}) does not cover "
                           f"{', '.join(missing)} (h=)")
        else:
            fields = checker.signature_fields
            return DkimVerdict(True, f"DKIM pass for d={signer}",
                               signature_digest=_digest(fields.get(b"b", b"")),
                               signed_at=_timestamp(fields.get(b"t")))
    return DkimVerdict(False, "; ".join(reasons))


def _digest(b_value: bytes) -> str:
    # b= may be folded anywhere: the value is the base64 without white space.
    return hashlib.sha256(re.sub(rb"\s+", b"", b_value)).hexdigest()


def _timestamp(t_value: bytes | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(t_value or b""), UTC)
    except (ValueError, OverflowError, OSError):
        return None
