"""What a CA's certificate list turns into: counts, domains, every rejected line and why."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import time
import tracemalloc
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import LimitExceeded
from bot.parse.certlists.read import (
    CertRecord,
    ListLimits,
    RejectedLine,
    count_summary,
    iter_certificate_list,
    looks_like_certificate_list,
)
from bot.parse.mail.archives import ArchiveLimits
from tests.corpus import corpus_file, shared_corpus

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Issued:
    ca: x509.Certificate
    leaves: tuple[x509.Certificate, ...]

    def pem(self, *certs: x509.Certificate) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@cache
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject: x509.Name,
    issuer: x509.Name,
    serial: int,
    sans: list[str] | None = None,
    poison: bool = False,
) -> x509.Certificate:
    key = _key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=90))
    )
    if sans is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False
        )
    if poison:
        builder = builder.add_extension(x509.PrecertPoison(), critical=True)
    return builder.sign(key, hashes.SHA256())


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


@cache
def issue(n: int) -> Issued:
    """A CA and `n` leaves, leaf i with SANs host{i}.example.com and www.Host{i}.example.com."""
    ca_name = _name("Example Issuing CA", "Example CA Inc")
    ca = _cert(ca_name, ca_name, 0x1000)
    leaves = tuple(
        _cert(
            _name(f"host{i}.example.com"),
            ca_name,
            0xABC000 + i,
            [f"host{i}.example.com", f"www.Host{i}.example.com"],
        )
        for i in range(n)
    )
    return Issued(ca, leaves)


def parse(filename: str, data: bytes, **kw: object) -> list[CertRecord | RejectedLine]:
    return list(iter_certificate_list(filename, data, **kw))  # type: ignore[arg-type]


def records(items: list[CertRecord | RejectedLine]) -> list[CertRecord]:
    return [i for i in items if isinstance(i, CertRecord)]


def rejections(items: list[CertRecord | RejectedLine]) -> list[RejectedLine]:
    return [i for i in items if isinstance(i, RejectedLine)]


def sha256_of(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


# ---------------------------------------------------------------- PEM, DER, PKCS#7


def test_pem_bundle_gives_every_certificate_with_fields_and_line() -> None:
    issued = issue(5)
    data = issued.pem(issued.ca, *issued.leaves)
    items = parse("bundle.pem", data)
    assert rejections(items) == []
    got = records(items)
    assert len(got) == 6
    leaf = got[1]
    assert leaf.sha256 == sha256_of(issued.leaves[0])
    assert leaf.serial == "abc000"
    assert leaf.issuer == "O=Example CA Inc,CN=Example Issuing CA"
    assert leaf.subject == "CN=host0.example.com"
    assert leaf.dns_names == ("host0.example.com", "www.host0.example.com")
    assert leaf.not_before == NOW and leaf.not_after == NOW + timedelta(days=90)
    assert leaf.not_before.tzinfo is not None
    assert leaf.precertificate is False
    assert leaf.source == "bundle.pem"
    # Each block's record carries the line of its BEGIN.
    begins = [
        n for n, ln in enumerate(data.decode().splitlines(), 1) if ln.startswith("-----BEGIN")
    ]
    assert [r.line for r in got] == begins
    summary = count_summary(items)
    # CA without SAN contributes its CN; each leaf two names.
    assert (summary.count, summary.unique_domains, summary.rejected) == (6, 11, 0)


def test_precertificate_is_flagged() -> None:
    ca = issue(1).ca
    pre = _cert(_name("p.example.com"), ca.subject, 77, ["P.example.com"], poison=True)
    (record,) = records(parse("pre.pem", pre.public_bytes(serialization.Encoding.PEM)))
    assert record.precertificate is True
    assert record.dns_names == ("p.example.com",)


def test_wildcards_are_kept_as_written_and_lower_cased() -> None:
    ca = issue(1).ca
    cert = _cert(_name("x"), ca.subject, 5, ["*.Example.COM", "example.com"])
    (record,) = records(parse("w.pem", cert.public_bytes(serialization.Encoding.PEM)))
    assert record.dns_names == ("*.example.com", "example.com")


def test_a_bad_block_is_rejected_with_its_line_and_the_rest_is_read() -> None:
    issued = issue(3)
    good = [c.public_bytes(serialization.Encoding.PEM).decode() for c in issued.leaves]
    lines = good[1].splitlines()
    del lines[3:5]  # still base64, no longer a certificate
    text = "Some preamble a CA typed\n\n" + good[0] + "\n".join(lines) + "\n" + good[2]
    items = parse("mixed.pem", text.encode())
    assert len(records(items)) == 2
    (bad,) = rejections(items)
    bad_line = text.splitlines().index("-----BEGIN CERTIFICATE-----", 3) + 1
    assert bad.line == bad_line
    assert "not a readable certificate" in bad.reason
    assert bad.text == "-----BEGIN CERTIFICATE-----"


def test_pem_block_without_end_is_rejected() -> None:
    issued = issue(2)
    pem = issued.pem(issued.leaves[0]).decode()
    truncated = pem + pem.rsplit("-----END", 1)[0]
    items = parse("cut.pem", truncated.encode())
    assert len(records(items)) == 1
    (bad,) = rejections(items)
    assert bad.reason == "PEM block has no END line"
    assert bad.line == len(pem.splitlines()) + 1


def test_single_and_concatenated_der() -> None:
    issued = issue(3)
    ders = [c.public_bytes(serialization.Encoding.DER) for c in issued.leaves]
    (one,) = parse("leaf.der", ders[0])
    assert isinstance(one, CertRecord) and one.line is None and one.serial == "abc000"
    assert [r.serial for r in records(parse("all.der", b"".join(ders)))] == [
        "abc000",
        "abc001",
        "abc002",
    ]


@pytest.mark.parametrize("encoding", [serialization.Encoding.DER, serialization.Encoding.PEM])
def test_pkcs7_bundle(encoding: serialization.Encoding) -> None:
    issued = issue(4)
    data = pkcs7.serialize_certificates([issued.ca, *issued.leaves], encoding)
    items = parse("chain.p7b", data)
    assert rejections(items) == []
    assert sorted(r.sha256 for r in records(items)) == sorted(
        sha256_of(c) for c in (issued.ca, *issued.leaves)
    )


def test_negative_serial_certificate_is_read() -> None:
    """cryptography's warning about it is kept off stderr: see
    test_smime.test_hostile_certificate_fields_are_read_without_noise_in_the_log."""
    der = bytearray(issue(1).leaves[0].public_bytes(serialization.Encoding.DER))
    serial_at = der.index(bytes.fromhex("020400abc000"))  # INTEGER 0xABC000, sign octet first
    der[serial_at + 2] = 0x80  # now negative: a non-conforming serial a CA might report
    (record,) = parse("neg.der", bytes(der))
    assert isinstance(record, CertRecord) and record.serial == "80abc000"


def test_garbage_der_is_one_rejection() -> None:
    (bad,) = parse("x.der", b"\x30\x82\x00\x05hello")
    assert isinstance(bad, RejectedLine)
    assert "not a certificate, PKCS#7 bundle or CRL" in bad.reason


# ---------------------------------------------------------------- CSV and plain lines


def test_csv_with_header_reports_rejected_lines_by_file_line_number() -> None:
    data = (
        b"serial,issuer,domains\n"  # line 1
        b'01:AB:cd,"CN=R3,O=Let\'s Encrypt,C=US",a.example.com b.example.com\n'
        b'0x00FF,"CN=R3,O=Let\'s Encrypt,C=US",c.example.com\n'
        b'zz12,"CN=R3,O=Let\'s Encrypt,C=US",d.example.com\n'  # line 4
        b"\n"
        b"# a comment\n"
        b"0a 0b,,E.example.com\n"  # line 7
    )
    items = parse("list.csv", data)
    got = records(items)
    assert [r.serial for r in got] == ["1abcd", "ff", "a0b"]
    assert [r.line for r in got] == [2, 3, 7]
    assert got[0].issuer == "CN=R3,O=Let's Encrypt,C=US"
    assert got[0].dns_names == ("a.example.com", "b.example.com")
    assert got[2].issuer is None and got[2].sha256 is None
    (bad,) = rejections(items)
    assert (bad.line, bad.reason) == (4, "serial 'zz12' is not hexadecimal")
    assert bad.text.startswith("zz12,")
    summary = count_summary(items)
    assert (summary.count, summary.unique_domains, summary.rejected) == (3, 4, 1)
    assert summary.first_rejections == (bad,)


@pytest.mark.parametrize("delimiter", [";", "\t", ","])
def test_delimiters_semicolon_tab_comma(delimiter: str) -> None:
    rows = [
        ["Serial Number", "Issuer", "SHA-256 Fingerprint", "crt.sh ID", "Common Name"],
        ["1f", "CN=Sub CA, O=Example", "AB" * 32, "12345", "a.example.org"],
        ["2f", "CN=Sub CA, O=Example", "cd:" * 31 + "cd", "", "b.example.org"],
    ]
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter).writerows(rows)
    items = parse("l.csv", buf.getvalue().encode())
    assert rejections(items) == []
    first, second = records(items)
    assert (first.serial, first.issuer, first.sha256, first.crtsh_id) == (
        "1f",
        "CN=Sub CA, O=Example",
        "ab" * 32,
        12345,
    )
    assert second.sha256 == "cd" * 32 and second.crtsh_id is None
    assert second.dns_names == ("b.example.org",)


def test_serial_decimal_only_when_the_column_says_so() -> None:
    items = parse("d.csv", b"serial_decimal\n255\n12a\n")
    assert records(items)[0].serial == "ff"
    (bad,) = rejections(items)
    assert bad.line == 3 and "not a decimal number" in bad.reason
    # Digits in a plain serial column are hex.
    assert records(parse("h.csv", b"serial\n255\n"))[0].serial == "255"


def test_plain_lines_of_serials_fingerprints_and_crtsh_urls() -> None:
    fp = ":".join(["AA"] * 32)
    data = (
        "# serials of the affected certificates\n"
        "\n"
        "04:A1:B2\n"
        f"{fp}\n"
        "https://crt.sh/?id=123456789\n"
        f"https://crt.sh/?sha256={'bb' * 32}\n"
        "not a serial at all\n"
        "0x0000ff\n"
    ).encode()
    items = parse("serials.txt", data)
    got = records(items)
    assert [(r.line, r.serial, r.sha256, r.crtsh_id) for r in got] == [
        (3, "4a1b2", None, None),
        (4, None, "aa" * 32, None),
        (5, None, None, 123456789),
        (6, None, "bb" * 32, None),
        (8, "ff", None, None),
    ]
    (bad,) = rejections(items)
    assert bad.line == 7
    assert "is not a serial, SHA-256 fingerprint or crt.sh URL" in bad.reason
    assert count_summary(items).count == 5


def test_headerless_csv_cells_are_recognised_by_content() -> None:
    data = b'04a1,"CN=Sub, O=X",a.example.com\n04a2,"CN=Sub, O=X",b.example.com\n'
    got = records(parse("noheader.csv", data))
    assert [(r.serial, r.issuer, r.dns_names) for r in got] == [
        ("4a1", "CN=Sub, O=X", ("a.example.com",)),
        ("4a2", "CN=Sub, O=X", ("b.example.com",)),
    ]


def test_headerless_two_serial_like_columns_is_ambiguous() -> None:
    (bad,) = parse("x.csv", b"1234,04a1\n")
    assert isinstance(bad, RejectedLine) and "add a header line" in bad.reason


def test_csv_pem_column_holds_certificates() -> None:
    issued = issue(2)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["crtsh_id", "pem", "note"])
    for i, leaf in enumerate(issued.leaves):
        writer.writerow([100 + i, leaf.public_bytes(serialization.Encoding.PEM).decode(), "x"])
    writer.writerow([999, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ""])
    items = parse("pems.csv", buf.getvalue().encode())
    got = records(items)
    assert [(r.sha256, r.crtsh_id) for r in got] == [
        (sha256_of(issued.leaves[0]), 100),
        (sha256_of(issued.leaves[1]), 101),
    ]
    physical = buf.getvalue().splitlines()
    assert got[1].line == 1 + next(n for n, ln in enumerate(physical) if ln.startswith("101,"))
    (bad,) = rejections(items)
    assert bad.text.startswith("999,")


def test_header_without_identifying_column_is_said_and_lines_read_by_content() -> None:
    items = parse("x.csv", b"domains,notes\n04a1,a.example.com\n")
    first, second = items
    assert (
        isinstance(first, RejectedLine)
        and first.line == 1
        and "header names no serial" in first.reason
    )
    assert isinstance(second, CertRecord) and second.serial == "4a1"


def test_utf16_excel_export() -> None:
    data = "serial\tissuer\r\n0a\tCN=Ü CA\r\n".encode("utf-16")
    (record,) = parse("export.txt", data)
    assert isinstance(record, CertRecord) and (record.serial, record.issuer) == ("a", "CN=Ü CA")


def test_ten_million_columns_is_rejected_quickly_in_bounded_memory() -> None:
    data = b"serial,issuer\n" + b"," * 10_000_000 + b"\n0a,CN=X\n"
    tracemalloc.start()
    started = time.perf_counter()
    items = parse("wide.csv", data)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    (bad,) = rejections(items)
    assert bad.line == 2 and "10,000,001 characters long" in bad.reason
    assert [r.serial for r in records(items)] == ["a"]
    assert elapsed < 5
    assert peak < 16 << 20  # the 10 MB line is never held whole, let alone split


def test_many_columns_within_the_line_limit_are_rejected() -> None:
    (bad,) = parse("wide.csv", b"serial\n" + b"a," * 1000 + b"\n")
    assert isinstance(bad, RejectedLine) and bad.line == 2 and "1,001 columns" in bad.reason


def test_unclosed_quote_is_reported_not_fatal() -> None:
    limits = ListLimits(max_field_chars=1000)
    body = b'serial,issuer\n0a,"CN=open\n' + b"0b,x\n" * 500 + b"0c,y\n"
    items = parse("q.csv", body, limits=limits)
    bad = rejections(items)
    assert bad and bad[0].line == 2 and "field larger than field limit" in bad[0].reason
    assert records(items)[-1].serial == "c"


# ---------------------------------------------------------------- compression


def test_gzip_csv_detected_by_magic_not_name() -> None:
    data = gzip.compress(b"serial\n0a\n0b\n")
    got = records(parse("attachment.bin", data))
    assert [(r.serial, r.line, r.source) for r in got] == [
        ("a", 2, "attachment.bin"),
        ("b", 3, "attachment.bin"),
    ]


def test_zip_members_are_named_in_source() -> None:
    issued = issue(2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("part1.csv", "serial\n0a\nzz\n")
        archive.writestr("part2.csv.gz", gzip.compress(b"0b\n"))
        archive.writestr("certs/chain.pem", issued.pem(*issued.leaves))
    items = parse("list.zip", buf.getvalue())
    assert [(type(i).__name__, i.source, i.line) for i in items] == [
        ("CertRecord", "list.zip/part1.csv", 2),
        ("RejectedLine", "list.zip/part1.csv", 3),
        ("CertRecord", "list.zip/part2.csv.gz", 1),
        ("CertRecord", "list.zip/certs/chain.pem", 1),
        ("CertRecord", "list.zip/certs/chain.pem", 1 + issued.pem(issued.leaves[0]).count(b"\n")),
    ]


def test_truncated_gzip_keeps_what_was_read_and_says_so() -> None:
    data = gzip.compress(("serial\n" + "".join(f"{i:x}\n" for i in range(1, 100_000))).encode())
    items = parse("cut.csv.gz", data[: len(data) // 2])
    assert len(records(items)) > 10_000
    assert "ends early" in rejections(items)[-1].reason


def test_gzip_bomb_after_good_rows_raises_and_rows_stay() -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1) as gz:
        gz.write(b"serial\n" + b"".join(b"%x\n" % i for i in range(1, 1000)))
        zeros = b"0" * (1 << 20)
        for _ in range(300):
            gz.write(zeros)
    seen: list[CertRecord | RejectedLine] = []
    with pytest.raises(LimitExceeded) as info:
        for item in iter_certificate_list("bomb.csv.gz", buf.getvalue()):
            seen.append(item)
    assert info.value.limit in {"compression ratio", "decompressed size"}
    assert len(records(seen)) >= 999


def test_decompressed_size_limit_is_applied() -> None:
    limits = ListLimits(archive=ArchiveLimits(max_decompressed_bytes=100_000))
    data = gzip.compress(("serial\n" + "".join(f"{i:x}\n" for i in range(1, 50_000))).encode())
    with pytest.raises(LimitExceeded) as info:
        parse("big.csv.gz", data, limits=limits)
    assert (info.value.limit, info.value.maximum) == ("decompressed size", 100_000)


def test_corrupt_zip_is_one_rejection() -> None:
    (bad,) = parse("broken.zip", b"PK\x03\x04" + b"\x00" * 100)
    assert isinstance(bad, RejectedLine) and "not a readable zip" in bad.reason


# ---------------------------------------------------------------- counting


def test_count_summary_deduplicates() -> None:
    issued = issue(3)
    leaf = issued.leaves[0]
    pem_items = parse("a.pem", issued.pem(leaf, leaf, issued.leaves[1]))
    csv_items = parse(
        "b.csv",
        f"sha256,serial,issuer,domains\n{sha256_of(leaf)},,,host0.example.com\n"
        ",0a,CN=X,\n,0A,CN=X,\n,0a,CN=Y,\n".encode(),
    )
    summary = count_summary(pem_items + csv_items)
    # 2 distinct certificates, the fingerprint row is one of them, serials by (issuer, serial)
    assert summary.count == 2 + 2
    assert summary.unique_domains == 4


def test_first_rejections_keeps_ten() -> None:
    items = parse("x.csv", b"serial\n" + b"zz\n" * 25)
    summary = count_summary(items)
    assert summary.rejected == 25 and len(summary.first_rejections) == 10
    assert [r.line for r in summary.first_rejections] == list(range(2, 12))


# ---------------------------------------------------------------- detection


def test_looks_like_certificate_list() -> None:
    issued = issue(1)
    pem = issued.pem(issued.leaves[0])
    der = issued.leaves[0].public_bytes(serialization.Encoding.DER)
    assert looks_like_certificate_list("list.pem", "application/x-pem-file", pem)
    assert looks_like_certificate_list("x.crt", "application/octet-stream", der)
    assert looks_like_certificate_list("serials.txt", "text/plain", b"04a1\n04a2\n")
    assert looks_like_certificate_list("l.csv", "text/csv", b"Serial Number,Issuer\n")
    assert looks_like_certificate_list("l.csv.gz", "application/gzip", gzip.compress(pem))
    assert not looks_like_certificate_list("smime.p7s", "application/pkcs7-signature", der)
    assert not looks_like_certificate_list(
        "notes.txt", "text/plain", b"Dear program,\nwe found an issue.\n"
    )
    assert not looks_like_certificate_list(
        "key.pem", "text/plain", b"-----BEGIN PRIVATE KEY-----\n"
    )
    docx = io.BytesIO()
    with zipfile.ZipFile(docx, "w") as archive:
        archive.writestr("[Content_Types].xml", "<?xml version='1.0'?><Types/>")
    assert not looks_like_certificate_list("report.docx", "application/zip", docx.getvalue())


# ---------------------------------------------------------------- corpus

CORPUS_EXPECTED = {
    # file: (records, rejected, serial of the first record)
    "pkits-GoodCACRL.crl": (2, 0, "e"),
    "pkits-TrustAnchorRootCertificate.crt": (1, 0, "1"),
    "pyca-amazon-roots-ber-indefinite.p7b": (2, 0, "66c9fd5749736663f3b0b9ad9e89e7603f24a"),
    "pyca-amazon-roots.p7c": (2, 0, "66c9fd5749736663f3b0b9ad9e89e7603f24a"),
    "pyca-badasn1time.pem": (0, 1, None),
    "pyca-cryptography.io.chain.pem": (2, 0, "3f20"),
    "pyca-cryptography.io.chain_with_garbage.pem": (2, 1, "3f20"),
    "pyca-cryptography.io.old_header.pem": (1, 0, "3f20"),
    "pyca-cryptography.io.with_headers.pem": (1, 1, "3f20"),
    "pyca-e-trust.ru.der": (1, 0, "34681e40cb41ef33a9a0b7c876929a29"),
    "pyca-invalid_utf8_common_name.pem": (1, 0, "df0929da94b061ba"),
    "pyca-isrg.p7b.pem": (1, 0, "8210cfb0d240e3594463e0bb63828b00"),
    "sjm-simple-java-mail-ca.p7b": (1, 0, "8f858eacf090c5647223451aa5e383a6667aeab"),
    "sjm-smime_test_user.openssl-trusted.crt": (1, 0, "1"),
}


@shared_corpus
@pytest.mark.parametrize("name", sorted(CORPUS_EXPECTED))
def test_corpus_certs(name: str) -> None:
    path = corpus_file(f"certs/{name}")
    items = parse(name, path.read_bytes())
    expected_records, expected_rejected, first_serial = CORPUS_EXPECTED[name]
    assert (len(records(items)), len(rejections(items))) == (expected_records, expected_rejected)
    if first_serial is not None:
        assert records(items)[0].serial == first_serial
    assert not any("internal error" in r.reason for r in rejections(items))


@shared_corpus
def test_corpus_garbage_chain_lines_and_key_block() -> None:
    path = corpus_file("certs/pyca-cryptography.io.chain_with_garbage.pem")
    items = parse(path.name, path.read_bytes())
    assert [i.line for i in items] == [3, 39, 67]
    assert rejections(items)[0].reason == "PEM block 'PRIVATE KEY' is not a certificate"
    assert records(items)[0].dns_names == ("www.cryptography.io", "cryptography.io")


@shared_corpus
def test_corpus_invalid_utf8_name_still_counts() -> None:
    path = corpus_file("certs/pyca-invalid_utf8_common_name.pem")
    (record,) = parse(path.name, path.read_bytes())
    assert isinstance(record, CertRecord)
    assert record.subject is None and record.sha256 is not None


@shared_corpus
def test_corpus_openssl_text_preamble() -> None:
    path = corpus_file("smime/rt-demoCA-cacert.pem")
    (record,) = parse(path.name, path.read_bytes())
    assert isinstance(record, CertRecord) and record.line == 43


# ---------------------------------------------------------------- never raises


def _never_raises(name: str, data: bytes) -> None:
    try:
        items = parse(name, data)
    except LimitExceeded:
        return
    for item in items:
        if isinstance(item, RejectedLine):
            assert "internal error" not in item.reason, item
            assert len(item.text) <= 200


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096), st.sampled_from(["x.csv", "x.pem", "x.der", "x.zip", "x"]))
def test_arbitrary_bytes_never_raise(data: bytes, name: str) -> None:
    _never_raises(name, data)
    _never_raises(name, gzip.compress(data))
    looks_like_certificate_list(name, "application/octet-stream", data)


_TOKENS = [*'0123456789abcdefxzAB:,;\t \n\r"#=-./?', "crt.sh/?id=", "-----BEGIN ", "\n-----END "]
_TEXT = st.lists(st.sampled_from(_TOKENS), max_size=300).map("".join)


@settings(max_examples=300, deadline=None)
@given(_TEXT, st.sampled_from(["", "serial,issuer,domains\n", "sha256;crtsh_id\n", "pem\n"]))
def test_arbitrary_text_never_raises(text: str, header: str) -> None:
    _never_raises("x.csv", (header + text).encode())


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=1400))
def test_mangled_certificates_never_raise(junk: bytes, at: int) -> None:
    der = issue(1).leaves[0].public_bytes(serialization.Encoding.DER)
    at = min(at, len(der) - 1)
    mangled = der[:at] + junk + der[at + len(junk) :]
    _never_raises("m.der", mangled)
    pem = b"-----BEGIN CERTIFICATE-----\n" + __import__("base64").encodebytes(mangled)
    _never_raises("m.pem", pem + b"-----END CERTIFICATE-----\n")


def test_a_certificate_whose_issuer_name_has_an_unknown_string_tag_still_counts() -> None:
    # cryptography loads such a certificate and then raises KeyError on `.issuer`;
    # found by test_mangled_certificates_never_raise (an "internal error" before).
    leaf = issue(1).leaves[0]
    der = leaf.public_bytes(serialization.Encoding.DER)
    value = b"Example Issuing CA"
    at = der.index(bytes([0x0C, len(value)]) + value)  # the issuer CN's UTF8String tag
    [record] = parse("m.der", der[:at] + b"\x00" + der[at + 1 :])
    assert isinstance(record, CertRecord)
    assert record.issuer is None
    assert record.subject == leaf.subject.rfc4514_string()
    assert record.serial == format(leaf.serial_number, "x")


# The CSV fast path (bot.parse.certlists.textrows) must read every row it accepts
# exactly as the general path does. Each column mixes cells of the fast path's
# shape (first, drawn three times as often) with cells it must hand on.
_GOOD_CELLS = {
    "serial": ["", "00ab", "AB12", "0", "1" * 64],
    "issuer": ["", "CN=R3,O=X,C=US", "  CN=R3 ", " "],
    "crtsh_id": ["", "123", "1234567890123456789"],
    "dns_names": ["", "a.example b.example", "A.Example,b.example", " ", "a.example\tb.example",
                  "[a.example]", "a.example;b.example 'c.example'", "a.example\u2003b.example"],
    "sha256": ["", "AB" * 32, "ab" * 32],
    "subject": ["", "CN=host", " CN=host ", "\t"],
}
_OTHER_CELLS = {
    "serial": [" ab", "0xab", "ab:cd", "zz", "f" * 65],
    "crtsh_id": [" 123", "12345678901234567890", "https://crt.sh/?id=5", "x"],
    "sha256": ["ab:" * 31 + "ab", "ab" * 31, " " + "ab" * 32],
}
_CELLS = {k: v * 3 + _OTHER_CELLS.get(k, []) for k, v in _GOOD_CELLS.items()}


@settings(max_examples=1000, deadline=None)
@given(st.fixed_dictionaries({k: st.sampled_from(v) for k, v in _CELLS.items()}),
       st.permutations(list(_GOOD_CELLS)), st.integers(min_value=0, max_value=2))
def test_the_csv_fast_path_reads_a_row_as_the_general_path_does(
        cells: dict[str, str], header: list[str], drop: int) -> None:
    from bot.parse.certlists.der import _CertReader
    from bot.parse.certlists.textrows import _column_kind, _RowParser

    names = header[drop:]
    parser = _RowParser([_column_kind(n) for n in names], "l.csv", _CertReader())
    row = [cells[n] for n in names]
    assert parser.fast is not None
    fast = parser._fast(row, 7)
    general = parser._parse(row, 7, ",")
    if fast is not None:
        assert CertRecord(*fast) == general


def test_a_certificate_with_an_impossible_version_is_a_clear_rejection():
    """Found by the fuzz test above: cryptography's InvalidVersion is not a ValueError."""
    der = bytearray(issue(1).leaves[0].public_bytes(serialization.Encoding.DER))
    der[der.index(b"\xa0\x03\x02\x01\x02") + 4] = 5
    [rejected] = rejections(parse("m.der", bytes(der)))
    assert rejected.reason.endswith("(not a readable certificate: 5 is not a valid X509 "
                                    "version)")


# ------------------------------------------------- odd files made by openssl


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory):  # type: ignore[no-untyped-def]
    from tests.mailcorpus import certfiles_openssl

    return certfiles_openssl.build(tmp_path_factory.mktemp("certfiles"))


@pytest.mark.parametrize("name", [
    "one.der", "one-crlf.pem", "one-with-text.pem", "bundle-with-key.pem", "bundle.p7b",
    "bundle.p7b.pem", "one-trusted.pem", "bundle-torn.pem", "not-a-certificate.pem"])
def test_an_odd_certificate_file_made_by_openssl_is_read_as_a_person_reads_it(odd_files, name):
    from tests.mailcorpus.certfiles_openssl import EXPECTED, NAMES, SERIALS

    items = parse(name, odd_files[name].read_bytes())
    found, rejected = EXPECTED[name]
    assert (len(records(items)), len(rejections(items))) == (found, rejected), items
    assert [(r.serial, r.dns_names) for r in records(items)] \
        == [(s, (n,)) for s, n in zip(SERIALS, NAMES, strict=True)][:found]
    assert not any("internal error" in r.reason for r in rejections(items))
