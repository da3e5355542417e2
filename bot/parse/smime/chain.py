"""Judge a signer certificate whose signature holds: its chain to the anchors, usage, revocation.

Path validation first tries cryptography's `x509.verification` (WebPKI rules
for CAs); real S/MIME CAs often fail those rules (SHA-1 signatures, missing key
usage, 1024-bit keys in old chains), so a second, plain RFC 5280-style path
check decides when that one refuses: issuer name, issuer signature,
basicConstraints/keyUsage/pathLen, validity at `at`. Facts derived from a
certificate alone, and the chains the verifier built, are cached.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from bot.parse.smime.values import Context, SmimeResult

log = logging.getLogger("rootnotify.parse.smime")

# Longest certificate path (leaf … anchor); S/MIME chains are 2–4 long.
MAX_CHAIN_DEPTH = 8
# Certificate signature checks spent building paths; bounds loops and
# many same-named candidate issuers (each check is ~30 µs for RSA-2048).
MAX_PATH_SIGNATURE_CHECKS = 64
# Per-certificate facts (names, e-mail addresses, key usage) and built chains
# are cached: a sender signs many messages with one certificate, and deriving
# them costs as much as the MIME and CMS handling of a message (~0.2 ms).
# A few hundred signers is every CA contact of a root program with room to
# spare; each entry is a few KB.
CERTIFICATE_CACHE_SIZE = 512
CHAIN_CACHE_SIZE = 512


@dataclass(frozen=True)
class _SignerFacts:
    subject: str
    emails: tuple[str, ...]
    der: bytes
    usage_problem: str | None


# Keyed by the certificate, which hashes and compares by its DER: a pure
# function of the certificate's bytes, so a cached answer is always the answer.
@lru_cache(maxsize=CERTIFICATE_CACHE_SIZE)
def _signer_facts(signer: x509.Certificate) -> _SignerFacts:
    return _SignerFacts(
        _safe_name(signer.subject),
        _emails(signer),
        signer.public_bytes(Encoding.DER),
        _leaf_usage_problem(signer),
    )


def with_signer(base: SmimeResult, signer: x509.Certificate, ctx: Context) -> SmimeResult:
    facts = _signer_facts(signer)
    return replace(
        base,
        signer_subject=facts.subject,
        signer_emails=facts.emails,
        signer_certificate=facts.der,
        from_mismatch=bool(ctx.from_address) and ctx.from_address not in facts.emails,
    )


def _emails(cert: x509.Certificate) -> tuple[str, ...]:
    found: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        found.extend(san.value.get_values_for_type(x509.RFC822Name))
    except (x509.ExtensionNotFound, ValueError):
        pass
    try:
        for attr in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
            found.append(str(attr.value))
    except ValueError:
        pass
    return tuple(dict.fromkeys(e.strip().lower() for e in found))


def _safe_name(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()
    except ValueError:
        return repr(name)


@lru_cache(maxsize=CERTIFICATE_CACHE_SIZE)  # pure in the certificate's bytes, as above
def _short_name(cert: x509.Certificate) -> str:
    try:
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(cn[0].value) if cn else _safe_name(cert.subject)
    except ValueError:
        return _safe_name(cert.subject)


def judge_chain(
    base: SmimeResult,
    signer: x509.Certificate,
    embedded: list[x509.Certificate],
    crls: list[x509.CertificateRevocationList],
    ctx: Context,
) -> SmimeResult:
    if not ctx.anchors:
        return replace(
            base, status="untrusted", reason="signature valid; no trust anchors configured"
        )
    chain = _webpki_chain(signer, embedded, ctx)
    refusals: list[str] = []
    if chain is None:
        paths = list(_manual_paths(signer, embedded, ctx.anchors, refusals))
        if not paths:
            if signer.issuer == signer.subject and signer not in ctx.anchors:
                refusals.insert(0, "the signer certificate is self-signed")
            detail = "; ".join(dict.fromkeys(refusals)) or "no issuer found among the anchors"
            return replace(
                base,
                status="untrusted",
                reason=f"signature valid, but signer not chained to a configured anchor ({detail})",
            )
        chain = next((p for p in paths if _outside_validity(p, ctx.at) is None), paths[0])
        stale = _outside_validity(chain, ctx.at)
        if stale is not None:
            return replace(
                base,
                status="expired",
                reason=(
                    f"signature valid; certificate '{_short_name(stale)}' is not valid at "
                    f"{ctx.at:%Y-%m-%d %H:%M} UTC (valid {stale.not_valid_before_utc:%Y-%m-%d} to "
                    f"{stale.not_valid_after_utc:%Y-%m-%d})"
                ),
            )
    problem = _signer_facts(signer).usage_problem or _revocation_problem(chain, crls, ctx.at)
    if problem:
        return replace(base, status="untrusted", reason=f"signature valid, but {problem}")
    weak = "; SHA-1 digest (weak)" if base.weak_digest else ""
    return replace(
        base,
        status="valid",
        reason=f"signature valid; signer chained to '{_short_name(chain[-1])}'{weak}",
    )


# Chains cryptography's verifier built, by (signer, intermediates, anchors).
# Of its checks only validity depends on the time, so a cached chain is
# reused only when every certificate in it is valid at the new time; else the
# verifier runs again (and may find another path, or refuse). Revocation (the
# CRLs a message carries) and the leaf's usage are judged for every message.
_ChainKey = tuple[x509.Certificate, tuple[x509.Certificate, ...], tuple[x509.Certificate, ...]]
_chains: dict[_ChainKey, list[x509.Certificate]] = {}
_chains_lock = threading.Lock()


def _webpki_chain(
    signer: x509.Certificate, embedded: list[x509.Certificate], ctx: Context
) -> list[x509.Certificate] | None:
    """The chain by cryptography's verifier, or None when its WebPKI CA rules refuse."""
    intermediates = tuple(c for c in embedded if c != signer)
    key = (signer, intermediates, ctx.anchors)
    cached = _chains.get(key)
    if cached is not None and _outside_validity(cached, ctx.at) is None:
        return list(cached)
    chain = _webpki_verify(signer, list(intermediates), ctx)
    if chain is not None:
        with _chains_lock:
            if len(_chains) >= CHAIN_CACHE_SIZE:
                _chains.clear()  # bounded; refilled by the senders still writing
            _chains[key] = chain
    return chain


def _webpki_verify(
    signer: x509.Certificate, intermediates: list[x509.Certificate], ctx: Context
) -> list[x509.Certificate] | None:
    try:
        verifier = (
            PolicyBuilder()
            .store(Store(list(ctx.anchors)))
            .time(ctx.at)
            .max_chain_depth(MAX_CHAIN_DEPTH)
            # The EE policy is permissive because the default demands clientAuth;
            # the e-mail EKU is checked in _leaf_usage_problem.
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        return list(verifier.verify(signer, intermediates).chain)
    except (VerificationError, ValueError, TypeError) as exc:
        log.debug("WebPKI path refused, trying the plain path check: %s", exc)
        return None


def _manual_paths(
    leaf: x509.Certificate,
    embedded: list[x509.Certificate],
    anchors: tuple[x509.Certificate, ...],
    refusals: list[str],
) -> Iterator[list[x509.Certificate]]:
    """Paths leaf → anchor by name and signature, ignoring validity dates (judged after)."""
    anchor_set = set(anchors)
    by_subject: dict[x509.Name, list[x509.Certificate]] = {}
    for cert in [*anchors, *embedded]:  # anchors first: the shortest trusted path wins
        by_subject.setdefault(cert.subject, []).append(cert)
    budget = [MAX_PATH_SIGNATURE_CHECKS]

    def extend(path: list[x509.Certificate]) -> Iterator[list[x509.Certificate]]:
        cert = path[-1]
        if cert in anchor_set:
            yield path
            return
        if len(path) >= MAX_CHAIN_DEPTH:
            refusals.append(f"path longer than {MAX_CHAIN_DEPTH} certificates")
            return
        for issuer in by_subject.get(cert.issuer, []):
            if issuer in path:
                continue  # a loop of cross-signed certificates
            if budget[0] <= 0:
                refusals.append(f"gave up after {MAX_PATH_SIGNATURE_CHECKS} signature checks")
                return
            budget[0] -= 1
            problem = _issuer_problem(cert, issuer, len(path) - 1, issuer in anchor_set)
            if problem:
                refusals.append(f"'{_short_name(cert)}': {problem}")
                continue
            yield from extend([*path, issuer])

    if not by_subject.get(leaf.issuer) and leaf not in anchor_set:
        refusals.append(f"issuer '{_safe_name(leaf.issuer)}' is not among the anchors")
    yield from extend([leaf])


def _issuer_problem(
    cert: x509.Certificate, issuer: x509.Certificate, intermediates_below: int, is_anchor: bool
) -> str | None:
    try:
        try:
            cert.verify_directly_issued_by(issuer)
        except (UnsupportedAlgorithm, ValueError):
            # cryptography refuses SHA-1 certificate signatures outright
            _verify_legacy_issuance(cert, issuer)
    except InvalidSignature:
        return f"certificate signature failure (not signed by '{_short_name(issuer)}')"
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"issuer signature not checkable: {exc}"
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    except ValueError as exc:
        return f"issuer extensions unreadable: {exc}"
    # A configured anchor without basicConstraints (v1 roots) is trusted as
    # configured; an intermediate must say it is a CA.
    if constraints is None and not is_anchor and issuer.version != x509.Version.v1:
        return f"'{_short_name(issuer)}' is not a CA (no basicConstraints)"
    if constraints is not None:
        if not constraints.ca:
            return f"'{_short_name(issuer)}' is not a CA"
        if constraints.path_length is not None and intermediates_below > constraints.path_length:
            return f"'{_short_name(issuer)}' pathLenConstraint exceeded"
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            return f"'{_short_name(issuer)}' may not sign certificates (keyUsage)"
    except x509.ExtensionNotFound:
        pass
    return None


def _verify_legacy_issuance(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """Check a certificate signature that `verify_directly_issued_by` refuses to (SHA-1).

    Real S/MIME chains from before 2017 are SHA-1 signed; they are still worth
    judging at their signing time. Raises InvalidSignature or ValueError.
    """
    if cert.issuer != issuer.subject:
        raise ValueError("issuer name does not match")
    key = issuer.public_key()
    hash_algorithm = cert.signature_hash_algorithm
    params = cert.signature_algorithm_parameters
    if isinstance(key, rsa.RSAPublicKey) and isinstance(params, padding.PSS | padding.PKCS1v15):
        key.verify(cert.signature, cert.tbs_certificate_bytes, params, hash_algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
        key.verify(cert.signature, cert.tbs_certificate_bytes, params)
    else:
        raise ValueError(f"unsupported issuer key or signature ({type(key).__name__})")


def _outside_validity(path: list[x509.Certificate], at: datetime) -> x509.Certificate | None:
    for cert in path:
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            return cert
    return None


def _leaf_usage_problem(signer: x509.Certificate) -> str | None:
    try:
        eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        allowed = {ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
        if not allowed & set(eku):
            return "the signer certificate is not for e-mail protection (extendedKeyUsage)"
    except x509.ExtensionNotFound:
        pass
    try:
        usage = signer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (usage.digital_signature or usage.content_commitment):
            return "the signer certificate may not sign (keyUsage)"
    except x509.ExtensionNotFound:
        pass
    return None


def _revocation_problem(
    chain: list[x509.Certificate], crls: list[x509.CertificateRevocationList], at: datetime
) -> str | None:
    """Revocation per CRLs carried in the message itself; we never fetch CRLs (no network)."""
    for cert, issuer in itertools.pairwise(chain):
        for crl in crls:
            if crl.issuer != issuer.subject:
                continue
            try:
                if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                    continue
            except (TypeError, ValueError, UnsupportedAlgorithm):
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is not None and entry.revocation_date_utc <= at:
                return (
                    f"certificate '{_short_name(cert)}' was revoked on "
                    f"{entry.revocation_date_utc:%Y-%m-%d} (CRL carried in the message)"
                )
    return None
