"""Measure a certificate list ingested end to end (`rootnotify ingest`) against a bare baseline.

The cases of issue 14, each compared with a bare baseline measured in the
same run, each in its own child process (wall time, and peak RSS from
`os.wait4`):

* a 1,000,000-row `serial,issuer` CSV (~86 MB uncompressed, under a 128 MiB
  `max_message_size`) attached to a CA's reply in an incident with an open
  `certificate-list` request, through `rootnotify ingest` (raw store, MIME
  parse and base64 decode, the list parser, the inserts, the receipt) —
  against the `csv` module reading the same rows plus one SQLite
  `executemany` in one transaction into a table of the same shape (same
  columns, same unique key, WAL, synchronous=FULL);
* the same list gzip-compressed, against the same baseline reading the gzip;
* 100,000 PEM certificates, against a bare `x509.load_pem_x509_certificates`
  loop with the same field extraction (RFC 4514 names, SANs, validity,
  SHA-256, CT poison) plus the insert;
* 3,000,000 rows, gzip-compressed (uncompressed they pass the 128 MiB
  limit), whose peak RSS is compared with the 1,000,000-row gzip list's.

Each list mail is, as in the issue, one S/MIME-signed reply (multipart/signed
by `openssl cms -sign`, the signer's certificate naming the CA's contact,
its root configured as the CA's `smime_anchors`); the S/MIME result must be
`valid`. `--unsigned` measures the same mails without the signature.

The receipt's counts are checked against the list, and how long SQLite's
write lock was held (the list moves into the incident in chunk transactions)
is read from the `certificate-list` event. The machines are noisy (±30%):
only the ratios inside one run mean anything.

    python bench/certlists_ingest.py [--rows 1000000] [--certs 100000] [--big-rows 3000000]
                                     [--workdir DIR] [--only csv|gzip|pem|big] [--unsigned]
"""

from __future__ import annotations

import argparse
import csv
import email
import email.policy
import gzip
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.certlists_parse import bare_certificate_fields, make_pem  # noqa: E402, F401

CA_CONTACT = "incidents@exampleca.test"
BOT = "rootnotify@program.test"
# The issue's limit: the 86 MB list is ~116 MB once base64-encoded, under it.
BENCH_MAX_MESSAGE_SIZE = 128 << 20
GOAL_RATIO = 2.0
GOAL_RSS_MIB = 300
GOAL_FLAT = 0.10  # 3,000,000 rows' peak within 10% of 1,000,000 rows'
ISSUER_ROWS = ("CN=R3,O=Let's Encrypt,C=US",
               "CN=Example TLS Issuing CA 2,O=Example Trust Services Ltd,L=London,C=GB",
               "CN=Sub CA 7,OU=Server,O=Bank CA,C=DE")

FORM = """\
CA name: Example CA
Incident type: mis-issuance
When did the incident occur: 2026-11-25T14:05:00Z
Who detected the incident: An external researcher
When the CA discovered the incident: 2026-11-26T09:30:00Z
Where the incident occurred: Issuing CA 2
Which roots (and end-entity certificates, if requested) were affected: Example Root R1
Which sub-CAs were affected: Example Issuing CA 2
What the CA believes the underlying cause is: a skipped CAA check
Remedial measures taken or planned: revoking
"""

CONFIG = f"""
[bot]
address = "{BOT}"
data_dir = "var"
[storage]
url = "sqlite:///var/rootnotify.db"
[smtp]
max_message_size = {BENCH_MAX_MESSAGE_SIZE}
[outgoing]
mode = "maildir"
from = "Root Program <{BOT}>"
[staff]
addresses = ["alice@program.test"]
auth = "none"
[[ca]]
name = "Example CA"
contacts = ["{CA_CONTACT}"]
"""
# Appended when the list mail is signed: the CA's S/MIME root, written beside the config.
SIGNED_CONFIG = 'smime_anchors = ["smime-root.pem"]\n'


# The bare baseline's table: the shape of storage.models.Certificate.
BARE_SCHEMA = """
CREATE TABLE certificate (id INTEGER PRIMARY KEY, incident_id VARCHAR NOT NULL,
  key VARCHAR NOT NULL, sha256 VARCHAR, serial VARCHAR, issuer VARCHAR, subject VARCHAR,
  dns_names VARCHAR NOT NULL, not_before DATETIME, not_after DATETIME,
  precertificate BOOLEAN NOT NULL, crtsh_id INTEGER, inbound_id INTEGER,
  UNIQUE (incident_id, key));
CREATE INDEX ix_certificate_incident_id ON certificate (incident_id);
CREATE TABLE domain (id INTEGER PRIMARY KEY, incident_id VARCHAR NOT NULL,
  name VARCHAR NOT NULL, UNIQUE (incident_id, name));
CREATE INDEX ix_domain_incident_id ON domain (incident_id);
"""
INSERT_CERT = ("INSERT OR IGNORE INTO certificate (incident_id, key, sha256, serial, issuer, "
               "subject, dns_names, not_before, not_after, precertificate, crtsh_id, inbound_id) "
               "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")


# ---------------------------------------------------------------- the bare baselines (children)


def _bare_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(BARE_SCHEMA)
    return db


def make_serial_csv(path: Path, rows: int) -> None:
    """`serial,issuer` rows, as the issue's list; gzip-compressed when the name ends in .gz."""
    rng = random.Random(1)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as out:  # type: ignore[operator]
        writer = csv.writer(out)
        writer.writerow(["serial", "issuer"])
        for i in range(rows):
            writer.writerow([f"{rng.getrandbits(144):036x}", ISSUER_ROWS[i % len(ISSUER_ROWS)]])


def _csv_rows(path: Path) -> Iterator[list[str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as text:  # type: ignore[operator]
        rows = csv.reader(text)
        next(rows)
        yield from rows


def bare_csv(path: Path, db_path: Path) -> int:
    db = _bare_db(db_path)
    count = 0

    def certs() -> Iterator[tuple[object, ...]]:
        nonlocal count
        for serial, issuer in _csv_rows(path):
            count += 1
            yield ("INC-2026-0001", f"serial:{issuer.lower()}:{serial}", None, serial, issuer,
                   None, "", None, None, False, None, 1)

    db.execute("BEGIN IMMEDIATE")
    db.executemany(INSERT_CERT, certs())
    db.execute("COMMIT")
    return count


def bare_pem(path: Path, db_path: Path) -> int:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    sha256 = hashes.SHA256()
    db = _bare_db(db_path)
    def certs() -> Iterator[tuple[object, ...]]:
        for cert in x509.load_pem_x509_certificates(path.read_bytes()):
            serial, issuer, subject, not_before, not_after, fingerprint, dns, poison = (
                bare_certificate_fields(cert, sha256))
            yield ("INC-2026-0001", fingerprint, fingerprint, serial, issuer, subject,
                   "\n".join(dns), not_before.replace(tzinfo=None),
                   not_after.replace(tzinfo=None), poison, None, 1)

    db.execute("BEGIN IMMEDIATE")
    db.executemany(INSERT_CERT, certs())
    db.execute("COMMIT")
    return db.execute("SELECT count(*) FROM certificate").fetchone()[0]


# ---------------------------------------------------------------- the parent


def in_child(call: str) -> None:
    """Run `call` (Python, with this module's names) in a child process.

    A child's ru_maxrss starts from its parent's peak at fork (Linux keeps
    the high-water mark across exec), so the parent that measures must stay
    small: building a 115 MB mail here had made every child "peak" at 486 MiB.
    """
    code = (f"import sys; from pathlib import Path; sys.path.insert(0, {str(ROOT)!r}); "
            f"from bench.certlists_ingest import *; {call}")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})


def measure(args: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one child; the peak from its own rusage (wait4)."""
    out_path = cwd / "child.out"
    err_path = cwd / "child.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        child = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=err,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text()
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{stdout}\n{err_path.read_text()[-3000:]}")
    return wall, usage.ru_maxrss / 1024, stdout  # ru_maxrss is in KiB on Linux


def list_mail(path: Path, attachment: Path, filename: str, ctype: str) -> None:
    msg = EmailMessage()
    msg["From"] = CA_CONTACT
    msg["To"] = BOT
    msg["Subject"] = "Re: [INC-2026-0001] Request: the list of mis-issued certificates"
    msg["Date"] = "Thu, 26 Nov 2026 13:00:00 +0000"
    msg["Message-ID"] = f"<list-{filename}@exampleca.test>"
    msg.set_content("The list is attached.\n")
    maintype, _, subtype = ctype.partition("/")
    msg.add_attachment(attachment.read_bytes(), maintype=maintype, subtype=subtype,
                       filename=filename)
    path.write_bytes(msg.as_bytes())


def sign_mail(path: Path, home: Path) -> None:
    """`path` (a list mail) re-made as a multipart/signed reply by the CA's contact.

    The signed entity is the mail's MIME body (its content headers and
    parts); the outer headers stay outside, as mail clients do. openssl
    streams the signing, so a 116 MB entity costs it little memory.
    """
    from tests.smime_factory import make_ca, make_signer, pem, run

    root = make_ca("Bench S/MIME Root")
    signer = make_signer(root, CA_CONTACT)
    (home / "smime-root.pem").write_bytes(pem(root.cert))
    (home / "signer.pem").write_bytes(pem(signer.cert, signer.key))
    raw = path.read_bytes()
    split = raw.index(b"\n\n")
    head, body = raw[:split].decode().split("\n"), raw[split + 2:]
    outer = [h for h in head if not h.lower().startswith(("content-", "mime-version"))]
    inner = [h for h in head if h.lower().startswith("content-")]
    (home / "entity.eml").write_bytes(("\n".join(inner) + "\n\n").encode() + body)
    del raw, body
    done = run(["openssl", "cms", "-sign", "-signer", "signer.pem", "-md", "sha256",
                "-in", "entity.eml", "-out", "signed.eml"], cwd=home)
    if done.returncode:
        raise SystemExit(done.stderr.decode())
    signed = (home / "signed.eml").read_bytes()
    path.write_bytes(("\n".join(outer) + "\n").encode() + signed)
    (home / "entity.eml").unlink()
    (home / "signed.eml").unlink()


def _mail(path: Path, sender: str, subject: str, date: str, message_id: str, body: str) -> None:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = BOT
    msg["Subject"] = subject
    msg["Date"] = date
    msg["Message-ID"] = message_id
    msg.set_content(body)
    path.write_bytes(msg.as_bytes())


def ingest_case(work: Path, name: str, attachment: Path, filename: str,
                ctype: str, *, signed: bool = True) -> dict[str, Any]:
    """A fresh deployment: notify, staff request the list, then ingest the list mail."""
    home = work / f"ingest-{name}"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(CONFIG + (SIGNED_CONFIG if signed else ""))
    shutil.rmtree(home / "var", ignore_errors=True)
    _mail(home / "notify.eml", CA_CONTACT, "Security incident notification",
          "Thu, 26 Nov 2026 12:00:00 +0000", "<notify@exampleca.test>", FORM)
    _mail(home / "request.eml", "alice@program.test",
          "Re: [INC-2026-0001] Security incident notification", "Thu, 26 Nov 2026 12:30:00 +0000",
          "<request@program.test>", "/request certificate-list due 2026-12-05\n")
    in_child(f"list_mail(Path({str(home / 'list.eml')!r}), Path({str(attachment)!r}), "
             f"{filename!r}, {ctype!r})")
    if signed:
        in_child(f"sign_mail(Path({str(home / 'list.eml')!r}), Path({str(home)!r}))")
    cli = [sys.executable, "-m", "bot.cli", "--config", str(home / "config.toml")]
    measure([*cli, "ingest", str(home / "notify.eml"), str(home / "request.eml")], home)
    wall, rss, out = measure([*cli, "ingest", str(home / "list.eml")], home)
    if "1 processed" not in out:
        raise SystemExit(f"the list mail was not processed: {out}")
    _, _, shown = measure([*cli, "show", "INC-2026-0001", "--json"], home)
    data = json.loads(shown)
    event = next(e for e in data["events"] if e["kind"] == "certificate-list")
    listed = [m for m in data["messages"]
              if m["direction"] == "in" and m["kind"] == "certificate-list"]
    smime = listed[0].get("smime") if listed else None
    satisfied = [d for d in data["deadlines"] if d["kind"] == "certificate-list"]
    # The receipt is queued by the ingest; a tick hands it to the maildir outbox.
    measure([*cli, "tick"], home)
    receipt = ""
    for path in sorted((home / "var" / "outbox" / "new").iterdir()):
        mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if "Certificate list recorded" in str(mail["Subject"]):
            receipt = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return {"wall": wall, "rss": rss, "count": data["certificates"]["count"],
            "domains": data["certificates"]["unique_domains"],
            "rejected": data["certificates"]["rejected"], "store": event["data"]["seconds"],
            "chunks": event["data"].get("chunks", 1),
            "longest": event["data"].get("longest_chunk_seconds", event["data"]["seconds"]),
            "size": (home / "list.eml").stat().st_size,
            "satisfied": bool(satisfied) and satisfied[0]["state"] == "satisfied",
            "receipt": receipt, "signed": signed, "smime": smime}


def bare_case(work: Path, name: str, source: Path) -> dict[str, float]:
    db = work / f"bare-{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    code = (f"import sys; from pathlib import Path; sys.path.insert(0, {str(ROOT)!r}); "
            f"from bench.certlists_ingest import bare_{name}; "
            f"print(bare_{name}(Path({str(source)!r}), Path({str(db)!r})))")
    wall, rss, out = measure([sys.executable, "-c", code], work)
    return {"wall": wall, "rss": rss, "count": int(out.strip())}


def report(name: str, rows: int, ours: dict[str, Any], bare: dict[str, float]) -> float:
    """Print one case; returns the wall-time ratio ours / bare."""
    print(f"\n{name}: {rows:,} rows, list mail {ours['size'] / 1e6:.1f} MB")
    print(f"  rootnotify ingest   {ours['wall']:7.2f} s  {rows / ours['wall']:>9,.0f} rows/s"
          f"  peak RSS {ours['rss']:5.0f} MiB  (count {ours['count']:,.0f}, unique domains "
          f"{ours['domains']:,.0f}, rejected {ours['rejected']:,.0f})")
    print(f"    of which storing the list: {ours['store']:.2f} s; {ours['chunks']:,.0f} write "
          f"transactions, the longest {ours['longest']:.3f} s (the SQLite write lock's longest "
          f"hold)")
    print(f"  bare baseline       {bare['wall']:7.2f} s  {rows / bare['wall']:>9,.0f} rows/s"
          f"  peak RSS {bare['rss']:5.0f} MiB")
    ratio = ours["wall"] / bare["wall"]
    stored = ours["count"] == rows == bare["count"]
    receipt = f"{rows:,} certificate row(s) read: {rows:,} new" in ours["receipt"]
    print(f"  ratio ours/bare {ratio:.2f} (goal <= {GOAL_RATIO}: "
          f"{'met' if ratio <= GOAL_RATIO else 'NOT met'}); peak RSS goal < {GOAL_RSS_MIB} MiB: "
          f"{'met' if ours['rss'] < GOAL_RSS_MIB else 'NOT met'}; all rows stored: "
          f"{'yes' if stored else 'NO'}; receipt with its counts: {'yes' if receipt else 'NO'};"
          f" request satisfied: {'yes' if ours['satisfied'] else 'NO'}")
    if ours["signed"]:
        print(f"  signed reply: S/MIME {ours['smime']} "
              f"({'as expected' if ours['smime'] == 'valid' else 'NOT valid'})")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--certs", type=int, default=100_000)
    parser.add_argument("--big-rows", type=int, default=3_000_000)
    parser.add_argument("--workdir", type=Path, default=None, help="reuse generated inputs here")
    parser.add_argument("--only", choices=("csv", "gzip", "pem", "big"), action="append")
    parser.add_argument("--unsigned", action="store_true", help="list mails without S/MIME")
    args = parser.parse_args()
    signed = not args.unsigned
    only = set(args.only or ("csv", "gzip", "pem", "big"))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="certlists-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    plain = work / f"serials-{args.rows}.csv"
    packed = work / f"serials-{args.rows}.csv.gz"
    big = work / f"serials-{args.big_rows}.csv.gz"
    pem_path = work / f"certs-{args.certs}.pem"
    for needed, path, make in ((("csv",), plain, f"make_serial_csv(P, {args.rows})"),
                               (("gzip", "big"), packed, f"make_serial_csv(P, {args.rows})"),
                               (("big",), big, f"make_serial_csv(P, {args.big_rows})"),
                               (("pem",), pem_path, f"make_pem(P, {args.certs})")):
        if only.intersection(needed) and not path.exists():
            in_child(f"P = Path({str(path)!r}); {make}")
    gzip_rss = None
    if "csv" in only:
        report("CSV, uncompressed", args.rows,
               ingest_case(work, "csv", plain, "misissued.csv", "text/csv", signed=signed),
               bare_case(work, "csv", plain))
    if only.intersection(("gzip", "big")):
        ours = ingest_case(work, "gzip", packed, "misissued.csv.gz", "application/gzip",
                           signed=signed)
        gzip_rss = ours["rss"]
        report("CSV, gzip", args.rows, ours, bare_case(work, "csv", packed))
    if "pem" in only:
        report("PEM bundle", args.certs,
               ingest_case(work, "pem", pem_path, "misissued.pem", "application/x-pem-file",
                           signed=signed),
               bare_case(work, "pem", pem_path))
    if "big" in only and gzip_rss is not None:
        ours = ingest_case(work, "big", big, "misissued.csv.gz", "application/gzip",
                           signed=signed)
        report(f"CSV, gzip, {args.big_rows:,} rows", args.big_rows, ours,
               bare_case(work, "csv", big))
        growth = ours["rss"] / gzip_rss - 1
        print(f"  peak RSS {ours['rss']:.0f} MiB against {gzip_rss:.0f} MiB for "
              f"{args.rows:,} rows: {growth:+.0%} (goal within {GOAL_FLAT:.0%}: "
              f"{'met' if abs(growth) <= GOAL_FLAT else 'NOT met'})")


if __name__ == "__main__":
    main()
