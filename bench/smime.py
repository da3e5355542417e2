"""Measure S/MIME verification of a 1 MB signed message against the bare cost of its cryptography.

The bare cost is what no verifier can avoid: hashing the 1 MB content and one
signature verification. Goal: full verification (MIME split, CMS parse,
signed attributes, chain of two certificates) within 2x of that.

The three measurements run interleaved, a short batch of each in turn, and
the ratio is the median of the batches' ratios: the machine is shared, and
timing one measurement after the other let a neighbour's load swing the ratio
between 1.5x and 2.9x from run to run on unchanged code.

    python -m bench.smime [--rounds N]
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bot.outbox.signing import sign_message
from bot.parse.smime.verify import verify_message

MESSAGE_BYTES = 1_000_000
# Rounds per batch: ~10 ms of work, short enough that a neighbour's load
# rarely changes between the three batches of one turn.
BATCH_ROUNDS = 10
AT = datetime(2026, 6, 1, tzinfo=UTC)


def _certificates() -> tuple[x509.Certificate, x509.Certificate, rsa.RSAPrivateKey]:
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Root")])
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench@ca.example")])
    start, end = AT - timedelta(days=30), AT + timedelta(days=30)
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(leaf_name)
        .issuer_name(root_name)
        .public_key(leaf_key.public_key())
        .serial_number(2)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name("bench@ca.example")]), critical=False
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    return root, leaf, leaf_key


def _message() -> bytes:
    # A certificate list as a base64 attachment: the usual shape of a large mail to us.
    payload = base64.encodebytes(os.urandom(MESSAGE_BYTES * 3 // 4)).replace(b"\n", b"\r\n")
    return (
        b"From: bench@ca.example\r\nTo: incidents@rootprogram.example\r\n"
        b"Subject: certificate list\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: application/octet-stream; name=list.bin\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + payload
    )


def _interleaved(actions: list[Callable[[], object]], rounds: int) -> list[list[float]]:
    """Seconds per batch of BATCH_ROUNDS, for each action, the actions taking turns."""
    for action in actions:
        action()  # warm caches and lazy imports outside the timing
    batches: list[list[float]] = [[] for _ in actions]
    for _ in range(max(1, rounds // BATCH_ROUNDS)):
        for action, times in zip(actions, batches, strict=True):
            started = time.perf_counter()
            for _ in range(BATCH_ROUNDS):
                action()
            times.append(time.perf_counter() - started)
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    rounds = parser.parse_args().rounds

    root, leaf, key = _certificates()
    signed = sign_message(_message(), certificate=leaf, private_key=key)
    stored_lf = signed.replace(b"\r\n", b"\n")  # how a maildir or mbox copy often looks
    content = signed[signed.index(b"Content-Type: application/octet-stream") :]
    signature = key.sign(b"signed attributes", padding.PKCS1v15(), hashes.SHA256())
    public_key = leaf.public_key()

    def bare() -> None:
        digest = hashes.Hash(hashes.SHA256())
        digest.update(content)
        digest.finalize()
        public_key.verify(signature, b"signed attributes", padding.PKCS1v15(), hashes.SHA256())

    def full(raw: bytes) -> Callable[[], object]:
        return lambda: verify_message(raw, anchors=[root], at=AT)

    assert verify_message(signed, anchors=[root], at=AT).status == "valid"
    assert verify_message(stored_lf, anchors=[root], at=AT).status == "valid"
    bare_times, crlf_times, lf_times = _interleaved([bare, full(signed), full(stored_lf)], rounds)

    def rate(times: list[float]) -> float:
        return len(times) * BATCH_ROUNDS / sum(times)

    def ratio(times: list[float]) -> str:
        ratios = sorted(t / b for t, b in zip(times, bare_times, strict=True))
        return f"{statistics.median(ratios):.2f}x (batches {ratios[0]:.2f}-{ratios[-1]:.2f})"

    print(f"message: {len(signed):,} bytes, RSA-2048, SHA-256, chain of 2, {rounds} rounds")
    print(f"bare cryptography (hash 1 MB + 1 signature): {rate(bare_times):8.1f} /s")
    print(f"verify_message, CRLF as on the wire:        {rate(crlf_times):8.1f} /s")
    print(f"verify_message, LF as stored (canonicalised): {rate(lf_times):6.1f} /s")
    print(f"ratio (verify / bare, CRLF): {ratio(crlf_times)}  (goal <= 2x)")
    print(f"ratio (verify / bare, LF):   {ratio(lf_times)}")


if __name__ == "__main__":
    main()
