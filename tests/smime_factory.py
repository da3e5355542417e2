"""Make throwaway S/MIME PKIs, and sign with openssl and gpgsm as independent signers.

Everything is written under the test's tmp_path; the CLIs run only here, in tests,
never in program code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Every test certificate is valid over this window unless a test says otherwise;
# tests validate at AT, inside it. gpgsm checks validity against the wall
# clock when signing, so the window also covers "now" for years to come.
NOT_BEFORE = datetime(2020, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2045, 1, 1, tzinfo=UTC)
AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
# CLI calls are local and quick; a hung gpg-agent must not hang the suite.
CLI_TIMEOUT_SECONDS = 60
GPGSM_IMPORT_ATTEMPTS = 4


@dataclass(frozen=True)
class Identity:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    email: str | None = None


@cache
def _key(kind: str, slot: int) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """Keys are cached per (kind, slot): RSA generation costs ~100 ms and tests need a few."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_ca(
    name: str = "Test S/MIME Root",
    *,
    issuer: Identity | None = None,
    key_kind: str = "rsa",
    slot: int = 0,
    organization: str = "rootnotify tests",
) -> Identity:
    """A CA; self-signed unless `issuer` is given (then an intermediate)."""
    key = _key(key_kind, 100 + slot)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    return Identity(builder.sign(signer_key, hashes.SHA256()), key)


def make_signer(
    ca: Identity,
    email: str = "alice@ca.example",
    *,
    key_kind: str = "rsa",
    slot: int = 0,
    not_before: datetime = NOT_BEFORE,
    not_after: datetime = NOT_AFTER,
    eku: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.EMAIL_PROTECTION,),
) -> Identity:
    key = _key(key_kind, slot)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example CA Ltd"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Signer {email}"),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .add_extension(
            x509.KeyUsage(True, True, key_kind != "ec", False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return Identity(builder.sign(ca.key, hashes.SHA256()), key, email)


def pem(*items: x509.Certificate | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    out = b""
    for item in items:
        if isinstance(item, x509.Certificate):
            out += item.public_bytes(serialization.Encoding.PEM)
        else:
            out += item.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
    return out


def run(
    args: list[str], *, cwd: Path, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        args,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=CLI_TIMEOUT_SECONDS,
        env=env,
        check=False,
    )


def openssl_sign(
    tmp: Path,
    signer: Identity,
    content: bytes,
    *,
    md: str = "sha256",
    opaque: bool = False,
    pss: bool = False,
    chain: tuple[x509.Certificate, ...] = (),
    headers: dict[str, str] | None = None,
) -> bytes:
    """`openssl cms -sign` over the MIME entity `content`; returns the whole S/MIME message."""
    (tmp / "signer.pem").write_bytes(pem(signer.cert, signer.key))
    (tmp / "content.eml").write_bytes(content)
    args = [
        "openssl",
        "cms",
        "-sign",
        "-signer",
        "signer.pem",
        "-md",
        md,
        "-in",
        "content.eml",
        "-out",
        "signed.eml",
    ]
    if opaque:
        args.append("-nodetach")
    if pss:
        args += ["-keyopt", "rsa_padding_mode:pss"]
    if chain:
        (tmp / "chain.pem").write_bytes(pem(*chain))
        args += ["-certfile", "chain.pem"]
    for name, value in (headers or {}).items():
        args += [f"-{name.lower()}", value]
    done = run(args, cwd=tmp)
    assert done.returncode == 0, done.stderr.decode()
    return (tmp / "signed.eml").read_bytes()


def openssl_verify(
    tmp: Path, message: bytes, anchor: x509.Certificate, at: datetime = AT
) -> subprocess.CompletedProcess[bytes]:
    """The independent verdict: `openssl cms -verify` at `at` against `anchor`."""
    (tmp / "anchor.pem").write_bytes(pem(anchor))
    (tmp / "to-verify.eml").write_bytes(message)
    return run(
        [
            "openssl",
            "cms",
            "-verify",
            "-CAfile",
            "anchor.pem",
            "-attime",
            str(int(at.timestamp())),
            "-in",
            "to-verify.eml",
            "-out",
            "verified-content.eml",
        ],
        cwd=tmp,
    )


def openssl_encrypt(tmp: Path, content: bytes, recipient: x509.Certificate) -> bytes:
    (tmp / "recipient.pem").write_bytes(pem(recipient))
    (tmp / "plain.eml").write_bytes(content)
    done = run(
        [
            "openssl",
            "cms",
            "-encrypt",
            "-aes256",
            "-in",
            "plain.eml",
            "-out",
            "encrypted.eml",
            "recipient.pem",
        ],
        cwd=tmp,
    )
    assert done.returncode == 0, done.stderr.decode()
    return (tmp / "encrypted.eml").read_bytes()


def gpgsm_sign(tmp: Path, signer: Identity, ca: Identity, content: bytes) -> bytes:
    """A detached gpgsm signature over `content`, wrapped as multipart/signed by hand.

    A throwaway GNUPGHOME holds the CA (trusted through trustlist.txt) and the
    signer's key (imported from a PKCS#12 with the legacy 3DES encryption that
    gpgsm 2.2 reads); the passphrase goes in on a file descriptor, so no pinentry.
    """
    if shutil.which("gpgsm") is None or shutil.which("gpgconf") is None:
        pytest.skip("gpgsm/gpgconf not installed")
    home = tmp / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    fingerprint = ca.cert.fingerprint(hashes.SHA1()).hex(":").upper()
    (home / "trustlist.txt").write_text(f"{fingerprint} S relax\n")
    (home / "gpgsm.conf").write_text("disable-crl-checks\n")  # no network in tests
    (tmp / "ca.pem").write_bytes(pem(ca.cert))
    (tmp / "content.eml").write_bytes(content)
    batch = ["gpgsm", "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0"]
    sign = [*batch, "-u", str(signer.email), "--detach-sign", "-o", "sig.p7s", "content.eml"]
    try:
        _gpgsm_step(["gpgsm", "--batch", "--import", "ca.pem"], tmp, env)
        # gpgsm 2.2 now and then fails to decrypt a valid PKCS#12 ("possibly bad
        # passphrase"); a fresh file (new salt) imports, so a few attempts are allowed.
        for attempt in range(1, GPGSM_IMPORT_ATTEMPTS + 1):
            (tmp / "signer.p12").write_bytes(_legacy_p12(signer, ca))
            done = run([*batch, "--import", "signer.p12"], cwd=tmp, stdin=b"test\n", env=env)
            if done.returncode == 0 and b"secret keys imported: 1" in done.stderr:
                break
            if attempt == GPGSM_IMPORT_ATTEMPTS:
                pytest.skip(f"gpgsm could not import the key: {done.stderr[-300:]!r}")
        _gpgsm_step(sign, tmp, env)
    finally:
        run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], cwd=tmp, env=env)
    return multipart_signed(content, (tmp / "sig.p7s").read_bytes(), micalg="sha-256")


def _legacy_p12(signer: Identity, ca: Identity) -> bytes:
    """PKCS#12 with SHA-1/3DES: gpgsm 2.2 cannot read cryptography's default AES PKCS#12."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(b"test")
    )
    return pkcs12.serialize_key_and_certificates(
        b"signer", signer.key, signer.cert, [ca.cert], encryption
    )


def _gpgsm_step(args: list[str], tmp: Path, env: dict[str, str]) -> None:
    done = run(args, cwd=tmp, stdin=b"test\n", env=env)
    if done.returncode != 0:
        pytest.skip(f"gpgsm could not be driven non-interactively: {done.stderr[-300:]!r}")


def multipart_signed(
    content: bytes, signature_der: bytes, *, micalg: str, boundary: str = "----=_signed_boundary_42"
) -> bytes:
    import base64

    b64 = base64.encodebytes(signature_der).replace(b"\n", b"\r\n")
    return (
        b"From: alice@ca.example\r\nTo: incidents@rootprogram.example\r\n"
        b"Subject: signed by gpgsm\r\nMIME-Version: 1.0\r\n"
        + f'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        f'micalg={micalg}; boundary="{boundary}"\r\n\r\n'.encode()
        + f"--{boundary}\r\n".encode()
        + content
        + f"\r\n--{boundary}\r\n".encode()
        + b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + f"\r\n--{boundary}--\r\n".encode()
    )


def text_entity(body: str = "The CA reports a key compromise.\n") -> bytes:
    """A small MIME entity as a CA would sign it (CRLF, 7bit)."""
    return (
        b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        + body.replace("\n", "\r\n").encode()
    )


def with_signing_time(signed: bytes, signer: Identity, when: datetime) -> bytes:
    """`signed` (bot.outbox.signing's multipart/signed) re-signed as if at `when`.

    cryptography writes the wall clock into signingTime and takes no other
    time; the bot judges a signing time against the mail's receipt, which
    tests set. The signed attributes get `when` and a new RSA signature.
    """
    import base64
    import re

    from asn1crypto import cms
    from cryptography.hazmat.primitives.asymmetric import padding

    head, part, rest = re.split(rb"(\r\nContent-Type: application/(?:x-)?pkcs7-signature)",
                                signed, maxsplit=1)
    headers, _, tail = rest.partition(b"\r\n\r\n")
    b64, boundary, end = re.split(rb"(\r\n\r?\n?--)", tail, maxsplit=1)
    info = cms.ContentInfo.load(base64.b64decode(b64))
    signer_info = info["content"]["signer_infos"][0]
    for attribute in signer_info["signed_attrs"]:
        if attribute["type"].native == "signing_time":
            attribute["values"] = cms.SetOfTime([cms.Time(name="utc_time", value=when)])
    # Signed as a SET OF (tag 0x31), not as the [0] it is carried under (RFC 5652 5.4).
    attributes = b"\x31" + signer_info["signed_attrs"].dump(force=True)[1:]
    assert isinstance(signer.key, rsa.RSAPrivateKey)
    signer_info["signature"] = signer.key.sign(attributes, padding.PKCS1v15(), hashes.SHA256())
    encoded = base64.encodebytes(info.dump(force=True)).replace(b"\n", b"\r\n").rstrip(b"\r\n")
    return head + part + headers + b"\r\n\r\n" + encoded + boundary + end
