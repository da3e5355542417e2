"""Certificate lists over SMTP: the CA sends the list staff asked for; the bot counts it.

The stories: the CA notifies, staff request the list of mis-issued
certificates (R2), and the CA replies in the thread with a PEM bundle, a CSV
with a bad line, a gzip-compressed CSV or a zip bomb. Each time the CA gets
a receipt with what was recorded and rejected, the deadline is satisfied,
and `show --json` counts certificates, unique domains and rejected lines.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.harness import CA_CONTACT, COMPLETE_FORM, STAFF, make_mail
from tests.story import command, deadline, notify, send, show, story_bot

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def make_cert(cn: str, sans: list[str]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Issuing CA 2")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=10)).not_valid_after(NOW + timedelta(days=80))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]),
                           critical=False)
            .sign(key, hashes.SHA256()))


def list_mail(incident_id: str, filename: str, ctype: str, data: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = CA_CONTACT
    msg["To"] = "rootnotify@program.test"
    msg["Subject"] = f"Re: [{incident_id}] Request: list of mis-issued certificates"
    msg.set_content("Please find the list attached.\n")
    maintype, _, subtype = ctype.partition("/")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def requested(bot: Any, sink: Any) -> str:
    """The CA notifies; staff request the certificate list. Returns the incident id."""
    inc = notify(bot, sink)
    command(bot, sink, "/request certificate-list due 2026-12-05", inc)
    assert deadline(show(bot, inc), "certificate-list", "open")
    return inc


def receipt(sink: Any, count: int = 1) -> Any:
    return sink.wait_for(sink.to(CA_CONTACT, "Certificate list recorded"), count=count)[-1]


def test_a_pem_bundle_is_counted_with_duplicates_once_and_satisfies_the_request(tmp_path):
    certs = [make_cert("a.example.com", ["a.example.com", "www.a.example.com"]),
             make_cert("b.example.com", ["b.example.com"]),
             make_cert("c.example.com", ["A.example.com", "*.c.example.com"])]
    bundle = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [*certs, certs[0]])
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = requested(bot, sink)
        send(bot, list_mail(inc, "misissued.pem", "application/x-pem-file", bundle))
        body = receipt(sink).body
        assert "4 certificate row(s) read: 3 new certificate(s) recorded, 1 already" in body
        assert "4 new unique domain(s)" in body and "0 line(s) rejected" in body
        assert "Signature of the list: NOT signed" in body
        assert "This satisfies: the list of mis-issued certificates" in body
        data = show(bot, inc)
        assert data["certificates"] == {"count": 3, "unique_domains": 4, "rejected": 0}
        assert deadline(data, "certificate-list", "satisfied")
        assert [m["kind"] for m in data["messages"] if m["direction"] == "in"][-1] \
            == "certificate-list"

        # The same list again (a resend) records nothing new: idempotent inserts.
        send(bot, list_mail(inc, "misissued-again.pem", "application/x-pem-file", bundle))
        again = receipt(sink, count=2).body
        assert "0 new certificate(s) recorded, 4 already recorded" in again
        assert show(bot, inc)["certificates"] == {"count": 3, "unique_domains": 4, "rejected": 0}


def test_a_csv_with_a_bad_line_is_recorded_and_the_line_named(tmp_path):
    csv_text = ("serial,issuer,domains\n"
                "0a1b2c,CN=Example Issuing CA 2,one.example.com\n"
                "zz12,CN=Example Issuing CA 2,bad.example.com\n"
                "0A:1B:2D,CN=Example Issuing CA 2,two.example.com;three.example.com\n"
                "0x0a1b2c,CN=Example Issuing CA 2,one.example.com\n")
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = requested(bot, sink)
        send(bot, list_mail(inc, "list.csv", "text/csv", csv_text.encode()))
        body = receipt(sink).body
        assert "1 line(s) rejected" in body
        assert "line 3:" in body and "zz12" in body
        assert "even though some lines were rejected" in body
        data = show(bot, inc)
        assert data["certificates"] == {"count": 2, "unique_domains": 3, "rejected": 1}
        assert deadline(data, "certificate-list", "satisfied")
        event = next(e for e in data["events"] if e["kind"] == "certificate-list")
        assert event["data"]["rejected"] == 1
        assert event["data"]["first_rejections"][0]["line"] == 3


def test_a_gzip_csv_of_a_thousand_rows(tmp_path):
    rows = "".join(f"{i + 1:x},CN=Example Issuing CA 2,host{i}.example.com\n" for i in range(1000))
    data = gzip.compress(("serial,issuer,dns_names\n" + rows).encode())
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = requested(bot, sink)
        send(bot, list_mail(inc, "list.csv.gz", "application/gzip", data))
        assert "1,000 new certificate(s) recorded" in receipt(sink).body
        assert show(bot, inc)["certificates"] == {"count": 1000, "unique_domains": 1000,
                                                  "rejected": 0}


def test_a_zip_bomb_is_cut_short_recorded_and_told(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        # 4.8 MB of one repeated row compress ~500:1, far past the 200:1 ratio limit,
        # which trips once the output passes 200 times the ~10 KB member: a few
        # seconds' work at most, well inside the wait for the receipt.
        archive.writestr("list.csv", "serial,issuer\n" + "0a1b,CN=Bomb CA\n" * 300_000)
    bomb = buffer.getvalue()
    assert len(bomb) < 20_000
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = requested(bot, sink)
        send(bot, list_mail(inc, "list.zip", "application/zip", bomb))
        body = receipt(sink).body
        assert "cut short by a safety limit" in body
        alert = sink.wait_for(lambda r: STAFF in r.recipients and "cut short" in r.subject)[0]
        assert inc in alert.subject and "ratio" in alert.body
        data = show(bot, inc)
        # The rows read before the limit are kept, counted once.
        assert data["certificates"]["count"] == 1
        assert deadline(data, "certificate-list", "satisfied")
        event = next(e for e in data["events"] if e["kind"] == "certificate-list")
        assert event["data"]["limit"]


def test_the_configured_decompression_limit_applies_to_lists(tmp_path):
    # 1,000 rows decompress to ~45 KB at a modest ratio: within the defaults,
    # past an operator's [limits] max_decompressed_bytes of 16 KiB.
    rows = "".join(f"{i + 1:x},CN=Example Issuing CA 2,host{i}.example.com\n" for i in range(1000))
    data = gzip.compress(("serial,issuer,dns_names\n" + rows).encode())
    extra = "\n[limits]\nmax_decompressed_bytes = 16384\n"
    with story_bot(tmp_path, NOW, extra=extra) as (bot, sink, _pki):
        inc = requested(bot, sink)
        send(bot, list_mail(inc, "list.csv.gz", "application/gzip", data))
        assert "cut short by a safety limit" in receipt(sink).body
        data = show(bot, inc)
        assert data["certificates"]["count"] < 1000  # not the whole list: the limit held
        event = next(e for e in data["events"] if e["kind"] == "certificate-list")
        assert "decompressed" in str(event["data"]["limit"])


def test_two_incidents_lists_are_counted_apart(tmp_path):
    shared = make_cert("shared.example.com", ["shared.example.com"])
    first = [shared, make_cert("a.example.com", ["a.example.com", "www.a.example.com"]),
             make_cert("b.example.com", ["b.example.com"])]
    second = [shared, make_cert("z.example.net", ["z.example.net"])]

    def pem_of(certs: list[x509.Certificate]) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)

    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc1 = requested(bot, sink)
        send(bot, make_mail(CA_CONTACT, "Another security incident",
                            COMPLETE_FORM.replace("Example Issuing CA 2", "Example Sub CA 9")))
        inc2 = "INC-2026-0002"
        sink.wait_for(sink.to(CA_CONTACT, f"[{inc2}] Notification received"))
        command(bot, sink, "/request certificate-list due 2026-12-05", inc2)

        send(bot, list_mail(inc1, "first.pem", "application/x-pem-file", pem_of(first)))
        assert ("The incident now lists 3 certificate(s) and 4 unique domain(s)."
                in receipt(sink).body)
        send(bot, list_mail(inc2, "second.pem", "application/x-pem-file", pem_of(second)))
        later = receipt(sink, count=2)
        assert f"[{inc2}]" in later.subject
        # The certificate both lists name is new to the second incident, counted there too.
        assert "2 certificate row(s) read: 2 new certificate(s) recorded" in later.body
        assert "The incident now lists 2 certificate(s) and 2 unique domain(s)." in later.body

        assert show(bot, inc1)["certificates"] == {"count": 3, "unique_domains": 4, "rejected": 0}
        assert show(bot, inc2)["certificates"] == {"count": 2, "unique_domains": 2, "rejected": 0}
