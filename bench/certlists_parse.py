"""Measure certificate-list parsing throughput against the bare libraries it sits on.

Two cases, each run in a fresh process so that peak RSS belongs to one case:

* a 1,000,000-row gzip CSV (serial, issuer, crt.sh id, domains): our
  `iter_certificate_list` (CertRecord objects) and `iter_certificate_rows`
  (plain tuples, what the database ingest uses) against a bare `csv.reader`
  loop over the same decompressed rows;
* a 100,000-certificate PEM bundle: ours against
  `x509.load_pem_x509_certificates` followed by the same field extraction
  done the obvious way (RFC 4514 names, SAN dNSNames, validity, SHA-256
  fingerprint, CT poison).

The machines are noisy (±30%); compare the ratios inside one run.

    python bench/certlists_parse.py [--rows 1000000] [--certs 100000] [--workdir /tmp/x]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import multiprocessing
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ISSUERS = [
    "CN=R3,O=Let's Encrypt,C=US",
    "CN=Example TLS Issuing CA G2,O=Example Trust Services Ltd,L=London,C=GB",
    "CN=Sub CA 7,OU=Server,O=Bank CA,C=DE",
]


def make_csv(path: Path, rows: int) -> None:
    rng = random.Random(1)
    with gzip.open(path, "wt", compresslevel=6, newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["serial", "issuer", "crtsh_id", "dns_names"])
        for i in range(rows):
            writer.writerow(
                [
                    f"{rng.getrandbits(144):036x}",
                    ISSUERS[i % len(ISSUERS)],
                    9_000_000_000 + i,
                    f"host{i}.example.com www.host{i}.example.com",
                ]
            )


def make_pem(path: Path, count: int) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    issuers = [x509.Name.from_rfc4514_string(text) for text in ISSUERS]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with path.open("wb") as out:
        for i in range(count):
            builder = (
                x509.CertificateBuilder()
                .subject_name(
                    x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"host{i}.example.com")])
                )
                .issuer_name(issuers[i % len(issuers)])
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start)
                .not_valid_after(start + timedelta(days=90))
                .add_extension(
                    x509.SubjectAlternativeName(
                        [
                            x509.DNSName(f"host{i}.example.com"),
                            x509.DNSName(f"www.host{i}.example.com"),
                        ]
                    ),
                    critical=False,
                )
            )
            if i % 100 == 0:
                builder = builder.add_extension(x509.PrecertPoison(), critical=True)
            cert = builder.sign(key, hashes.SHA256())
            out.write(cert.public_bytes(serialization.Encoding.PEM))


# ---------------------------------------------------------------- cases (run in a child)


def csv_bare(path: str) -> int:
    data = Path(path).read_bytes()
    n = 0
    with io.TextIOWrapper(
        gzip.GzipFile(fileobj=io.BytesIO(data)), encoding="utf-8", newline=""
    ) as text:
        for _row in csv.reader(text):
            n += 1
    return n - 1  # header


def csv_ours(path: str) -> int:
    from bot.parse.certlists.read import iter_certificate_list

    n = 0
    for _item in iter_certificate_list("list.csv.gz", Path(path).read_bytes()):
        n += 1
    return n


def csv_rows(path: str) -> int:
    from bot.parse.certlists.read import iter_certificate_rows

    n = 0
    for _item in iter_certificate_rows("list.csv.gz", Path(path).read_bytes()):
        n += 1
    return n


def bare_certificate_fields(cert: object, sha256: object) -> tuple:  # type: ignore[type-arg]
    """The fields rootnotify keeps of a certificate, read the plain cryptography way.

    (serial hex, issuer, subject, not before, not after, SHA-256 hex, SAN DNS
    names lower-cased, precertificate); the baseline both list benches share.
    """
    from cryptography import x509

    assert isinstance(cert, x509.Certificate)
    dns: list[str] = []
    poison = False
    for ext in cert.extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            dns = [d.lower() for d in ext.value.get_values_for_type(x509.DNSName)]
        elif isinstance(ext.value, x509.PrecertPoison):
            poison = True
    return (format(cert.serial_number, "x"), cert.issuer.rfc4514_string(),
            cert.subject.rfc4514_string(), cert.not_valid_before_utc,
            cert.not_valid_after_utc, cert.fingerprint(sha256).hex(), dns,  # type: ignore[arg-type]
            poison)


def pem_bare(path: str) -> int:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    sha256 = hashes.SHA256()
    n = 0
    for cert in x509.load_pem_x509_certificates(Path(path).read_bytes()):
        bare_certificate_fields(cert, sha256)
        n += 1
    return n


def pem_ours(path: str) -> int:
    from bot.parse.certlists.read import iter_certificate_list

    n = 0
    for _item in iter_certificate_list("bundle.pem", Path(path).read_bytes()):
        n += 1
    return n


CASES = {"csv_bare": csv_bare, "csv_ours": csv_ours, "csv_rows": csv_rows,
         "pem_bare": pem_bare, "pem_ours": pem_ours}


def _child(name: str, path: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    started = time.perf_counter()
    n = CASES[name](path)
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((n, elapsed, peak_kib))


def run(name: str, path: Path) -> tuple[int, float, int]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, str(path), queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--certs", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=None, help="reuse generated inputs here")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="certlists-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    csv_path = workdir / f"rows-{args.rows}.csv.gz"
    pem_path = workdir / f"certs-{args.certs}.pem"
    if not csv_path.exists():
        started = time.perf_counter()
        make_csv(csv_path, args.rows)
        took = time.perf_counter() - started
        print(f"generated {csv_path} ({csv_path.stat().st_size / 1e6:.1f} MB) in {took:.1f}s")
    if not pem_path.exists():
        started = time.perf_counter()
        make_pem(pem_path, args.certs)
        took = time.perf_counter() - started
        print(f"generated {pem_path} ({pem_path.stat().st_size / 1e6:.1f} MB) in {took:.1f}s")

    results = {}
    for name in CASES:
        path = csv_path if name.startswith("csv") else pem_path
        n, elapsed, peak_kib = run(name, path)
        results[name] = (n, elapsed, peak_kib)
        print(
            f"{name:9s} {n:>9,} items  {elapsed:7.2f} s  {n / elapsed:>10,.0f} /s"
            f"  peak RSS {peak_kib / 1024:6.0f} MiB"
        )
    for kind, name in (("csv", "csv_ours"), ("csv", "csv_rows"), ("pem", "pem_ours")):
        bare, ours = results[f"{kind}_bare"], results[name]
        print(
            f"{name}: ours/bare time ratio {ours[1] / bare[1]:.2f}"
            f"  (ours {ours[0] / ours[1]:,.0f}/s, bare {bare[0] / bare[1]:,.0f}/s)"
        )


if __name__ == "__main__":
    main()
