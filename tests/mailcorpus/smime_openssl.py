"""Make S/MIME mail with the openssl command line alone: a PKI, then signed and encrypted cases.

Nothing here uses rootnotify's code or the `cryptography` package: keys and
certificates come from `openssl req`/`openssl x509`, messages from `openssl
cms` and `openssl smime`, so the verdicts rootnotify gives are checked
against mail made by another implementation. `build(folder)` makes every
case in `folder` (a few seconds) and returns them with the verdict a person
who knows the PKI expects; `openssl cms -verify` gives its own verdict for
comparison (tests/test_smime_openssl.py).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

CLI_TIMEOUT_SECONDS = 60
SENDER = "incidents@exampleca.test"
# The leaf is valid for this many days from its making; the "expired" cases are
# verified past it, as a mail received later (a backlog, `reprocess`) would be.
LEAF_DAYS = 30

CONTENT = (b"Content-Type: text/plain; charset=us-ascii\r\n"
           b"Content-Transfer-Encoding: 7bit\r\n\r\n"
           b"CA name: Example CA\r\nIncident type: key-compromise\r\n"
           b"Who detected the incident: our HSM monitoring\r\n")

LEAF_EXTENSIONS = f"""\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = emailProtection
subjectAltName = email:{SENDER}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""
CA_EXTENSIONS = """\
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    anchors: tuple[Path, ...]
    at: datetime  # the receipt time it is judged at
    expected: str  # the S/MIME result value (DESIGN.md)
    openssl_accepts: bool | None  # what `openssl cms -verify` must say; None: not a signature


def openssl(folder: Path, *args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *args], cwd=folder, input=stdin, capture_output=True,
                          timeout=CLI_TIMEOUT_SECONDS, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout


def _ca(folder: Path, name: str, cn: str, issuer: str | None = None) -> None:
    (folder / "ca.ext").write_text(CA_EXTENSIONS)
    if issuer is None:
        openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                f"{name}.key", "-out", f"{name}.pem", "-days", "3650", "-subj",
                f"/O=Example CA/CN={cn}", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return
    openssl(folder, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/O=Example CA/CN={cn}")
    openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey",
            f"{issuer}.key", "-CAcreateserial", "-days", "3650", "-extfile", "ca.ext",
            "-out", f"{name}.pem")


def _leaf(folder: Path, name: str, issuer: str) -> None:
    (folder / "leaf.ext").write_text(LEAF_EXTENSIONS)
    openssl(folder, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/O=Example CA/CN=Incident Desk/emailAddress={SENDER}")
    openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey",
            f"{issuer}.key", "-CAcreateserial", "-days", str(LEAF_DAYS), "-extfile", "leaf.ext",
            "-out", f"{name}.pem")


def _headers(body: bytes, subject: str) -> bytes:
    return (f"From: Incident Desk <{SENDER}>\r\nTo: rootnotify@program.test\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{subject.replace(' ', '-')}@exampleca.test>\r\n"
            "Date: Thu, 26 Nov 2026 12:00:00 +0000\r\n").encode() + body


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def build(folder: Path) -> list[Case]:
    """Make the PKI and every case in `folder`; returns the cases with their expected verdicts."""
    folder.mkdir(parents=True, exist_ok=True)
    _ca(folder, "root", "Example SMIME Root")
    _ca(folder, "inter", "Example SMIME Issuing CA", issuer="root")
    _ca(folder, "other", "Example SMIME Root")  # the same name, another key
    _leaf(folder, "leaf", "root")
    _leaf(folder, "leaf2", "inter")
    (folder / "content.txt").write_bytes(CONTENT)
    now = datetime.now(UTC)
    later = now + timedelta(days=LEAF_DAYS + 10)
    root, other = (folder / "root.pem",), (folder / "other.pem",)
    cases: list[Case] = []

    def sign(name: str, *args: str, tool: str = "cms", signer: str = "leaf") -> Path:
        out = folder / f"{name}.eml"
        openssl(folder, tool, "-sign", "-signer", f"{signer}.pem", "-inkey", f"{signer}.key",
                "-in", "content.txt", "-out", f"{name}.body", *args)
        subject = name.replace("-", " ")
        out.write_bytes(_crlf(_headers((folder / f"{name}.body").read_bytes(), subject)))
        return out

    detached = sign("cms-detached")
    cases.append(Case("cms-detached", detached, root, now, "valid", True))
    cases.append(Case("cms-opaque", sign("cms-opaque", "-nodetach"), root, now, "valid", True))
    cases.append(Case("smime-detached", sign("smime-detached", tool="smime"), root, now,
                      "valid", True))
    cases.append(Case("smime-opaque", sign("smime-opaque", "-nodetach", tool="smime"), root,
                      now, "valid", True))
    cases.append(Case("cms-sha512", sign("cms-sha512", "-md", "sha512"), root, now, "valid",
                      True))
    cases.append(Case("chain-carried", sign("chain-carried", "-certfile", "inter.pem",
                                            signer="leaf2"), root, now, "valid", True))
    cases.append(Case("chain-missing", sign("chain-missing", signer="leaf2"), root, now,
                      "untrusted", False))
    cases.append(Case("other-root-same-name", detached, other, now, "untrusted", False))
    cases.append(Case("expired-at-receipt", detached, root, later, "expired", False))
    # No certificate in the signature: nothing to check it with.
    cases.append(Case("no-certificates", sign("no-certificates", "-nocerts"), root, now,
                      "untrusted", False))

    tampered = folder / "tampered.eml"
    tampered.write_bytes(detached.read_bytes().replace(b"HSM monitoring", b"HSM monitorinG"))
    cases.append(Case("tampered-content", tampered, root, now, "invalid", False))
    opaque_raw = (folder / "cms-opaque.eml").read_bytes()
    head, _, b64 = opaque_raw.partition(b"\r\n\r\n")
    lines = b64.split(b"\r\n")
    # Two lines before the end of the base64 lies the signature value itself.
    at = max(i for i, line in enumerate(lines) if line.strip()) - 2
    lines[at] = lines[at][:10] + (b"A" if lines[at][10:11] != b"A" else b"B") + lines[at][11:]
    flipped = folder / "opaque-flipped-byte.eml"
    flipped.write_bytes(head + b"\r\n\r\n" + b"\r\n".join(lines))
    cases.append(Case("opaque-flipped-byte", flipped, root, now, "invalid", False))

    openssl(folder, "cms", "-encrypt", "-aes256", "-in", "content.txt", "-out",
            "encrypted.body", "leaf.pem")
    encrypted = folder / "encrypted.eml"
    encrypted.write_bytes(_crlf(_headers((folder / "encrypted.body").read_bytes(), "encrypted")))
    cases.append(Case("encrypted-no-key", encrypted, root, now, "encrypted", None))
    return cases


def openssl_verdict(case: Case) -> bool:
    """`openssl cms -verify` of the case at its receipt time against its anchors."""
    args = ["openssl", "cms", "-verify", "-in", str(case.path), "-out", "/dev/null",
            "-attime", str(int(case.at.timestamp())), "-purpose", "smimesign"]
    for anchor in case.anchors:
        args += ["-CAfile", str(anchor)]
    done = subprocess.run(args, capture_output=True, timeout=CLI_TIMEOUT_SECONDS, check=False)
    return done.returncode == 0
