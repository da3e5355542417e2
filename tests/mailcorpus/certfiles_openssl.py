"""Certificate files in the odd shapes CAs send, made by the openssl command line alone.

`build(folder)` makes two certificates (`openssl req -x509`, known serials
0x1a2b3c and 0x4d5e6f, SANs one.example.test and two.example.test) and writes
them as: DER, PEM with CRLF line ends, `openssl x509 -text` output (text
before the PEM block), a bundle with a private-key block between the two,
a PKCS#7 bundle in DER and in PEM (`openssl crl2pkcs7 -nocrl`), a
"TRUSTED CERTIFICATE" (`-trustout`), a bundle with a torn second block, and
a file that is not a certificate at all. `EXPECTED` is what a reader finds.
"""

from __future__ import annotations

from pathlib import Path

from tests.mailcorpus.smime_openssl import openssl

SERIALS = ("1a2b3c", "4d5e6f")
NAMES = ("one.example.test", "two.example.test")

# file: (certificates found, lines or blocks rejected)
EXPECTED: dict[str, tuple[int, int]] = {
    "one.der": (1, 0),
    "one-crlf.pem": (1, 0),
    "one-with-text.pem": (1, 0),
    "bundle-with-key.pem": (2, 1),
    "bundle.p7b": (2, 0),
    "bundle.p7b.pem": (2, 0),
    "one-trusted.pem": (1, 0),
    "bundle-torn.pem": (1, 1),
    "not-a-certificate.pem": (0, 1),
}


def build(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for serial, name, n in zip(SERIALS, NAMES, ("one", "two"), strict=True):
        openssl(folder, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", f"{n}.key", "-out", f"{n}.pem", "-days", "90",
                "-set_serial", f"0x{serial}", "-subj", f"/CN={name}",
                "-addext", f"subjectAltName=DNS:{name}")
    one, two = (folder / "one.pem").read_bytes(), (folder / "two.pem").read_bytes()
    key = (folder / "one.key").read_bytes()
    files = {
        "one.der": openssl(folder, "x509", "-in", "one.pem", "-outform", "DER"),
        "one-crlf.pem": one.replace(b"\n", b"\r\n"),
        "one-with-text.pem": openssl(folder, "x509", "-in", "one.pem", "-text"),
        "bundle-with-key.pem": one + key + two,
        "bundle.p7b": openssl(folder, "crl2pkcs7", "-nocrl", "-certfile", "one.pem",
                              "-certfile", "two.pem", "-outform", "DER"),
        "bundle.p7b.pem": openssl(folder, "crl2pkcs7", "-nocrl", "-certfile", "one.pem",
                                  "-certfile", "two.pem"),
        "one-trusted.pem": openssl(folder, "x509", "-in", "one.pem", "-trustout",
                                   "-addtrust", "emailProtection"),
        "bundle-torn.pem": one + two[: len(two) // 2] + b"\n-----END CERTIFICATE-----\n",
        "not-a-certificate.pem": b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                                 b"-----END CERTIFICATE-----\n",
    }
    out = {}
    for name, data in files.items():
        path = folder / "odd" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        out[name] = path
    return out
