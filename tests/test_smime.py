"""What the bot concludes about S/MIME mail: real clients, openssl and gpgsm signatures, garbage."""

from __future__ import annotations

import base64
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.parse.smime.der import read_signed_data
from bot.parse.smime.locate import (
    _find_delimiter_line,
    decode_body,
    find_smime,
    parse_entity,
    split_multipart,
)
from bot.parse.smime.verify import (
    MAX_CMS_CERTIFICATES,
    SmimeResult,
    load_certificates,
    verify_message,
)
from tests.corpus import corpus_file, corpus_files, shared_corpus
from tests.smime_factory import (
    AT,
    gpgsm_sign,
    make_ca,
    make_signer,
    multipart_signed,
    openssl_encrypt,
    openssl_sign,
    text_entity,
)

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def anchors(*names: str) -> list[x509.Certificate]:
    return [c for name in names for c in load_certificates(corpus_file(name))]


def verify(name: str, anchor_files: tuple[str, ...] = (), at: datetime = NOW, **kw) -> SmimeResult:
    return verify_message(
        corpus_file(name).read_bytes(), anchors=anchors(*anchor_files), at=at, **kw
    )


TB = ("smime/tb-nss-TestCA.pem",)
STARTCOM = ("smime/mimekit-StartComCertificationAuthority.crt",)
STATUSES = {"valid", "invalid", "untrusted", "expired", "unsigned", "encrypted"}
PKITS = ("certs/pkits-TrustAnchorRootCertificate.crt",)

# (file, anchors, validation time, expected status, words the reason must contain)
CORPUS_CASES = [
    ("smime/tb-nss-alice.dsig.SHA256.multipart.eml", TB, NOW, "valid", "NSS Test CA"),
    ("smime/tb-nss-alice.dsig.SHA1.multipart.eml", TB, NOW, "valid", "SHA-1"),
    ("smime/tb-nss-alice.dsig.SHA256.multipart.bad.eml", TB, NOW, "invalid", "digest mismatch"),
    (
        "smime/tb-nss-alice.dsig.SHA256.multipart.in.mixed.eml",
        TB,
        NOW,
        "valid",
        "inside a multipart",
    ),
    (
        "smime/tb-nss-alice.dsig.SHA256.multipart.mismatch-econtent.eml",
        TB,
        NOW,
        "invalid",
        "digest mismatch",
    ),
    ("smime/tb-nss-alice.env.eml", TB, NOW, "encrypted", "no decryption key"),
    ("smime/tb-nss-alice.html.sig.SHA256.opaque.eml", TB, NOW, "valid", "NSS Test CA"),
    (
        "smime/tb-nss-alice.plain.dsig.SHA256.multipart.dave.sig.SHA256.opaque.eml",
        TB,
        NOW,
        "valid",
        "itself S/MIME",
    ),
    ("smime/tb-nss-alice.sig.SHA256.opaque.eml", TB, NOW, "valid", "NSS Test CA"),
    ("smime/tb-outer-smime-bad-sig-inner-smime-enc.eml", TB, NOW, "invalid", "digest mismatch"),
    ("smime/tb-nested-sigs.eml", TB, NOW, "invalid", "digest mismatch"),
    ("smime/rt-1-signed.eml", ("smime/rt-demoCA-cacert.pem",), NOW, "valid", "CA Owner"),
    ("smime/rt-1-signed.eml", ("smime/rt-otherCA-cacert.pem",), NOW, "untrusted", "not chained"),
    ("smime/rt-3-signed-binary.eml", ("smime/rt-demoCA-cacert.pem",), NOW, "valid", "CA Owner"),
    (
        "smime/rt-3-signed-binary.eml",
        ("smime/rt-otherCA-cacert.pem",),
        NOW,
        "untrusted",
        "not chained",
    ),
    (
        "smime/sjm-thunderbird-52-signed.eml",
        ("smime/sjm-ca.crt",),
        NOW,
        "valid",
        "Simple Java Mail CA",
    ),
    (
        "smime/mimekit-thunderbird-24.1.0-signed.eml",
        STARTCOM,
        datetime(2013, 11, 2, 20, 28, tzinfo=UTC),
        "valid",
        "StartCom Certification Authority",
    ),
    ("smime/mimekit-thunderbird-24.1.0-signed.eml", STARTCOM, NOW, "expired", "fejj@gnome.org"),
    (
        "smime/kde-kmail-4.13-opaque-sign.eml",
        ("smime/kde-unittest-cert.pem",),
        datetime(2013, 1, 10, 16, 0, tzinfo=UTC),
        "valid",
        "unittest cert",
    ),
    (
        "smime/kde-kmail-4.13-opaque-sign.eml",
        ("smime/kde-unittest-cert.pem",),
        NOW,
        "expired",
        "2013-03-25",
    ),
    ("smime/kde-kmail-4.13-opaque-sign.eml", (), NOW, "untrusted", "signer certificate not found"),
    ("smime/kde-apple-mail-9.3-signed-modified.eml", (), NOW, "invalid", "digest mismatch"),
    (
        "smime/kde-gpgsm-signed-iso8859-1-no-certs.eml",
        TB,
        NOW,
        "untrusted",
        "signer certificate not found",
    ),
    (
        "smime/flanker-m2crypto-x-pkcs7-signature.eml",
        TB,
        datetime(2009, 6, 23, tzinfo=UTC),
        "untrusted",
        "self-signed",
    ),
    ("smime/pkits-SignedValidSignaturesTest1.eml", PKITS, NOW, "valid", "Trust Anchor"),
    (
        "smime/pkits-SignedInvalidCASignatureTest2.eml",
        PKITS,
        NOW,
        "untrusted",
        "certificate signature failure",
    ),
    (
        "smime/pkits-SignedInvalidEESignatureTest3.eml",
        PKITS,
        NOW,
        "untrusted",
        "certificate signature failure",
    ),
    ("smime/pkits-SignedInvalidEEnotAfterDateTest6.eml", PKITS, NOW, "expired", "2011-01-01"),
    # CRL carried in the message lists the EE (PKITS 4.4.3); openssl fails it with -crl_check.
    ("smime/pkits-SignedInvalidRevokedEETest3.eml", PKITS, NOW, "untrusted", "revoked"),
    ("malformed/kde-smime-certs-only-garbage-base64.eml", (), NOW, "invalid", "not a CMS"),
]


@shared_corpus
@pytest.mark.parametrize(
    ("name", "anchor_files", "at", "status", "words"),
    CORPUS_CASES,
    ids=[f"{c[0].split('/')[1]}-{c[3]}" for c in CORPUS_CASES],
)
def test_corpus_message_gets_the_verdict_openssl_gives(tmp_path, name, anchor_files, at, status,
                                                      words):
    result = verify(name, anchor_files, at)
    assert (result.status, words in result.reason) == (status, True), result.reason
    if status in ("encrypted", "unsigned"):
        return
    anchor = tmp_path / "anchors.pem"
    anchor.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                for c in anchors(*anchor_files)))
    done = subprocess.run(["openssl", "cms", "-verify", "-in", str(corpus_file(name)),
                           "-CAfile", str(anchor), "-attime", str(int(at.timestamp())),
                           "-purpose", "any", "-out", "/dev/null"], capture_output=True,
                          timeout=60, check=False)
    openssl_valid = done.returncode == 0
    if name in OPENSSL_DIFFERS and status == OPENSSL_DIFFERS[name][0]:
        assert openssl_valid != (status == "valid"), OPENSSL_DIFFERS[name][1]
    else:
        assert openssl_valid == (status == "valid"), done.stderr.decode(errors="replace")


# Where openssl's own verdict differs from ours, and why: (our status, the reason).
OPENSSL_DIFFERS = {
    "smime/tb-nss-alice.dsig.SHA256.multipart.in.mixed.eml": (
        "valid", "openssl reads only a top-level multipart/signed, not one inside a mixed"),
    "smime/kde-kmail-4.13-opaque-sign.eml": (
        "valid", "the signature carries no certificate; openssl does not look among the "
                 "anchors for the signer, we do"),
    "smime/pkits-SignedInvalidRevokedEETest3.eml": (
        "untrusted", "openssl checks no revocation without a CRL given; the chain we build "
                     "refuses the revoked signer"),
}


@shared_corpus
def test_every_corpus_smime_and_malformed_file_gets_a_result_without_raising():
    files = corpus_files("smime") + corpus_files("malformed")
    if not files:
        pytest.skip("corpus absent")
    for path in files:
        result = verify_message(path.read_bytes(), anchors=[], at=NOW)
        assert result.status in STATUSES
        assert result.reason


@shared_corpus
def test_alice_signature_reports_who_signed_when_and_with_what():
    result = verify(
        "smime/tb-nss-alice.dsig.SHA256.multipart.eml", TB, from_address="Alice@example.com"
    )
    assert result.signer_emails == ("alice@example.com",)
    assert "CN=Alice" in (result.signer_subject or "")
    assert result.signing_time == datetime(2026, 1, 26, 14, 40, 10, tzinfo=UTC)
    assert result.digest_algorithm == "sha256" and not result.weak_digest
    assert result.from_mismatch is False
    assert result.content is not None and result.content.startswith(b"Content-Type: text/plain")
    assert x509.load_der_x509_certificate(result.signer_certificate or b"").subject == (
        x509.load_der_x509_certificate(result.certificates[0]).subject
    )


@shared_corpus
def test_signature_by_someone_else_than_the_sender_is_flagged():
    result = verify(
        "smime/tb-nss-alice.dsig.SHA256.multipart.eml", TB, from_address="mallory@example.com"
    )
    assert result.status == "valid" and result.from_mismatch


@shared_corpus
def test_sha1_signature_is_accepted_but_flagged_weak():
    result = verify("smime/tb-nss-alice.dsig.SHA1.multipart.eml", TB)
    assert (result.status, result.digest_algorithm, result.weak_digest) == ("valid", "sha1", True)


@shared_corpus
def test_opaque_signed_html_is_unwrapped_for_the_parser():
    result = verify("smime/tb-nss-alice.html.sig.SHA256.opaque.eml", TB)
    assert result.content is not None and b"text/html" in result.content


@shared_corpus
def test_detached_signature_never_reports_its_embedded_content_as_signed():
    result = verify("smime/tb-nss-alice.dsig.SHA256.multipart.mismatch-econtent.eml", TB)
    assert result.status == "invalid"
    assert "embedded copy of the content is ignored" in result.reason


@shared_corpus
def test_nested_signatures_outer_verified_and_inner_verifiable_from_content():
    outer = verify("smime/tb-nss-alice.plain.dsig.SHA256.multipart.dave.sig.SHA256.opaque.eml", TB)
    assert outer.signer_emails == ("dave@example.com",)
    inner = verify_message(outer.content or b"", anchors=anchors(*TB), at=NOW)
    assert (inner.status, inner.signer_emails) == ("valid", ("alice@example.com",))


@shared_corpus
def test_bad_outer_signature_over_encrypted_part_is_not_trusted():
    result = verify("smime/tb-outer-smime-bad-sig-inner-smime-enc.eml", TB)
    assert result.status == "invalid"
    assert result.content is not None and b"application/pkcs7-mime" in result.content


@shared_corpus
def test_pkits_valid_path_is_valid_only_with_the_right_anchor():
    assert verify("smime/pkits-SignedValidSignaturesTest1.eml", PKITS).status == "valid"
    assert verify("smime/pkits-SignedValidSignaturesTest1.eml", TB).status == "untrusted"
    assert verify("smime/pkits-SignedValidSignaturesTest1.eml", ()).reason.endswith(
        "no trust anchors configured"
    )


@shared_corpus
def test_outlook_opaque_signature_valid_when_signed_expired_now():
    name = "smime/sjm-outlook-opaque-signed-data.eml"
    carried = verify(name).certificates
    root = [c for c in map(x509.load_der_x509_certificate, carried) if c.subject == c.issuer]
    signed_at = datetime(2018, 11, 28, 16, 0, tzinfo=UTC)
    raw = corpus_file(name).read_bytes()
    assert verify_message(raw, anchors=root, at=signed_at).status == "valid"
    assert verify_message(raw, anchors=root, at=NOW).status == "expired"


@shared_corpus
def test_self_signed_m2crypto_signature_valid_when_its_own_cert_is_the_anchor():
    name = "smime/flanker-m2crypto-x-pkcs7-signature.eml"
    own = [x509.load_der_x509_certificate(d) for d in verify(name).certificates]
    result = verify_message(
        corpus_file(name).read_bytes(), anchors=own, at=datetime(2009, 6, 23, tzinfo=UTC)
    )
    assert result.status == "valid" and result.weak_digest


@shared_corpus
def test_load_certificates_reads_every_bundle_format_in_the_corpus():
    counts = {
        "smime/rt-demoCA-cacert.pem": 1,  # openssl text dump before the PEM
        "smime/kde-unittest-cert.pem": 1,  # gpgsm preamble
        "certs/pkits-TrustAnchorRootCertificate.crt": 1,  # bare DER
        "certs/pyca-amazon-roots-ber-indefinite.p7b": 2,  # BER PKCS#7
        "certs/pyca-amazon-roots.p7c": 2,
        "certs/pyca-isrg.p7b.pem": 1,
        "certs/sjm-simple-java-mail-ca.p7b": 1,
        "certs/sjm-smime_test_user.openssl-trusted.crt": 1,
        "certs/pyca-cryptography.io.with_headers.pem": 1,  # the key block is skipped
    }
    for name, count in counts.items():
        assert len(load_certificates(corpus_file(name))) == count, name
    chain = load_certificates(corpus_file("certs/pyca-cryptography.io.chain.pem"))
    assert len(
        load_certificates(corpus_file("certs/pyca-cryptography.io.chain_with_garbage.pem"))
    ) == len(chain)
    with pytest.raises(ValueError):
        load_certificates(b"asdfasdf")


# ── fresh signatures from independent implementations ──────────────────────


@pytest.fixture(scope="module")
def pki():
    root = make_ca()
    return {
        "root": root,
        "rsa": make_signer(root, "alice@ca.example"),
        "ec": make_signer(root, "erin@ca.example", key_kind="ec"),
    }


@pytest.mark.parametrize("md", ["sha256", "sha384", "sha512"])
@pytest.mark.parametrize("kind", ["rsa", "rsa-pss", "ec"])
@pytest.mark.parametrize("opaque", [False, True], ids=["detached", "opaque"])
def test_openssl_signature_verifies(tmp_path, pki, kind, md, opaque):
    signer = pki["ec" if kind == "ec" else "rsa"]
    entity = text_entity()
    raw = openssl_sign(
        tmp_path,
        signer,
        entity,
        md=md,
        opaque=opaque,
        pss=kind == "rsa-pss",
        headers={"From": signer.email, "Subject": "Incident notification"},
    )
    result = verify_message(raw, anchors=[pki["root"].cert], at=AT, from_address=signer.email)
    assert result.status == "valid", result.reason
    assert (result.digest_algorithm, result.from_mismatch) == (md, False)
    assert result.signer_emails == (signer.email,)
    assert result.content is not None
    assert result.content.replace(b"\r\n", b"\n") == entity.replace(b"\r\n", b"\n")


def test_openssl_signature_verifies_whether_stored_with_lf_or_crlf(tmp_path, pki):
    raw = openssl_sign(tmp_path, pki["rsa"], text_entity("line one\nline two\n"))
    lf = raw.replace(b"\r\n", b"\n")
    crlf = lf.replace(b"\n", b"\r\n")
    for form in (lf, crlf):
        assert verify_message(form, anchors=[pki["root"].cert], at=AT).status == "valid"


def test_content_altered_after_signing_is_invalid(tmp_path, pki):
    raw = openssl_sign(tmp_path, pki["rsa"], text_entity("Revoke 3 certificates.\n"))
    tampered = raw.replace(b"Revoke 3", b"Revoke 0")
    result = verify_message(tampered, anchors=[pki["root"].cert], at=AT)
    assert result.status == "invalid" and "digest mismatch" in result.reason


def test_forged_signature_value_is_invalid(tmp_path, pki):
    raw = openssl_sign(tmp_path, pki["rsa"], text_entity(), opaque=True)
    header, body = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)
    info = cms.ContentInfo.load(base64.b64decode(b"".join(body.split())))
    signer_info = info["content"]["signer_infos"][0]
    signature = bytearray(signer_info["signature"].native)
    signature[10] ^= 0xFF
    signer_info["signature"] = bytes(signature)
    forged = header + b"\r\n\r\n" + base64.encodebytes(info.dump(force=True))
    result = verify_message(forged, anchors=[pki["root"].cert], at=AT)
    assert result.status == "invalid" and "signature does not verify" in result.reason


def test_chain_through_an_intermediate_carried_in_the_signature(tmp_path, pki):
    intermediate = make_ca("Example CA S/MIME CA", issuer=pki["root"], slot=1)
    signer = make_signer(intermediate, "ops@ca.example", slot=2)
    raw = openssl_sign(tmp_path, signer, text_entity(), chain=(intermediate.cert,))
    result = verify_message(raw, anchors=[pki["root"].cert], at=AT)
    assert result.status == "valid" and "Test S/MIME Root" in result.reason
    lone = openssl_sign(tmp_path, signer, text_entity())  # intermediate not sent
    assert verify_message(lone, anchors=[pki["root"].cert], at=AT).status == "untrusted"


def test_same_name_other_ca_is_not_an_anchor(tmp_path, pki):
    impostor = make_ca(
        pki["root"].cert.subject.rfc4514_string().split("CN=")[1].split(",")[0], slot=3
    )
    raw = openssl_sign(tmp_path, pki["rsa"], text_entity())
    result = verify_message(raw, anchors=[impostor.cert], at=AT)
    assert result.status == "untrusted" and "certificate signature failure" in result.reason


def test_expired_signer_certificate(tmp_path, pki):
    old = make_signer(
        pki["root"], "old@ca.example", slot=4, not_after=datetime(2021, 1, 1, tzinfo=UTC)
    )
    # openssl refuses to sign with an expired certificate only when told to check; it does not
    raw = openssl_sign(tmp_path, old, text_entity())
    result = verify_message(raw, anchors=[pki["root"].cert], at=AT)
    assert result.status == "expired" and "old@ca.example" in result.reason
    at_signing = datetime(2020, 6, 1, tzinfo=UTC)
    assert verify_message(raw, anchors=[pki["root"].cert], at=at_signing).status == "valid"


def test_tls_only_certificate_is_not_trusted_for_mail(tmp_path, pki):
    tls = make_signer(pki["root"], "web@ca.example", slot=5, eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
    raw = openssl_sign(tmp_path, tls, text_entity())
    result = verify_message(raw, anchors=[pki["root"].cert], at=AT)
    assert result.status == "untrusted" and "e-mail protection" in result.reason


def test_header_spelling_variants_and_nesting_are_found(tmp_path, pki):
    raw = openssl_sign(tmp_path, pki["rsa"], text_entity())
    shouting = raw.replace(
        b"Content-Type: multipart/signed", b"CONTENT-TYPE: MULTIPART/SIGNED"
    ).replace(b"application/pkcs7-signature", b"application/x-pkcs7-signature")
    wrapped = (
        b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n--outer\r\n'
        + raw.split(b"\n", 1)[1]
        + b"\r\n--outer\r\nContent-Type: text/plain\r\n\r\n"
        b"-- list footer\r\n--outer--\r\n"
    )
    opaque = openssl_sign(tmp_path, pki["rsa"], text_entity(), opaque=True)
    mbox = b"From alice@ca.example Mon Jun  1 12:00:00 2026\n" + opaque
    for form in (shouting, wrapped, mbox):
        result = verify_message(form, anchors=[pki["root"].cert], at=AT)
        assert result.status == "valid", result.reason


def test_gpgsm_signature_verifies(tmp_path, pki):
    raw = gpgsm_sign(tmp_path, pki["rsa"], pki["root"], text_entity("Signed by gpgsm.\n"))
    result = verify_message(raw, anchors=[pki["root"].cert], at=AT)
    assert result.status == "valid", result.reason
    assert result.signer_emails == ("alice@ca.example",)


def test_encrypted_message_opens_with_the_key_and_its_signature_is_checked(tmp_path, pki):
    signed = openssl_sign(tmp_path, pki["rsa"], text_entity("Confidential details.\n"))
    sealed = openssl_encrypt(tmp_path, signed, pki["rsa"].cert)
    root = [pki["root"].cert]
    assert verify_message(sealed, anchors=root, at=AT).status == "encrypted"
    opened = verify_message(
        sealed,
        anchors=root,
        at=AT,
        decryption_key=pki["rsa"].key,
        decryption_certificate=pki["rsa"].cert,
    )
    assert opened.status == "valid" and opened.reason.startswith("decrypted; ")
    assert opened.content is not None and b"Confidential details." in opened.content
    stranger = make_signer(pki["root"], "bob@ca.example", slot=6)
    wrong = verify_message(
        sealed,
        anchors=root,
        at=AT,
        decryption_key=stranger.key,
        decryption_certificate=stranger.cert,
    )
    assert wrong.status == "encrypted" and "could not decrypt" in wrong.reason
    unsigned = openssl_encrypt(tmp_path, text_entity("Only sealed.\n"), pki["rsa"].cert)
    plain = verify_message(
        unsigned,
        anchors=root,
        at=AT,
        decryption_key=pki["rsa"].key,
        decryption_certificate=pki["rsa"].cert,
    )
    assert plain.status == "unsigned" and b"Only sealed." in (plain.content or b"")


def test_plain_mail_is_unsigned():
    result = verify_message(b"From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n", anchors=[], at=AT)
    assert (result.status, result.content) == ("unsigned", None)


# ── hostile input: bounded work, a verdict, never an exception ─────────────


def test_truncated_signature_is_invalid(tmp_path, pki):
    raw = openssl_sign(tmp_path, pki["rsa"], text_entity(), opaque=True)
    result = verify_message(raw[: len(raw) // 2], anchors=[pki["root"].cert], at=AT)
    assert result.status == "invalid"


def test_ten_thousand_certificates_are_refused_quickly(tmp_path, pki):
    raw = openssl_sign(tmp_path, pki["ec"], text_entity(), opaque=True)
    header, body = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)
    info = cms.ContentInfo.load(base64.b64decode(b"".join(body.split())))
    one = info["content"]["certificates"][0]
    info["content"]["certificates"] = [one] * 10_000
    flood = header + b"\r\n\r\n" + base64.encodebytes(info.dump(force=True))
    result = verify_message(flood, anchors=[pki["root"].cert], at=AT)
    assert result.status == "invalid" and str(MAX_CMS_CERTIFICATES) in result.reason


def test_cross_signed_loop_ends_untrusted(tmp_path, pki):
    a_key_holder = make_ca("Loop A", slot=7)
    b = make_ca("Loop B", issuer=a_key_holder, slot=8)
    a = make_ca("Loop A", issuer=b, slot=7)  # same name and key as A, now issued by B
    signer = make_signer(a, "loop@ca.example", slot=9)
    raw = openssl_sign(tmp_path, signer, text_entity(), chain=(a.cert, b.cert))
    result = verify_message(raw, anchors=[pki["root"].cert], at=AT)
    assert result.status == "untrusted"


def test_garbage_base64_in_a_signature_part(tmp_path, pki):
    raw = openssl_sign(tmp_path, pki["rsa"], text_entity())
    head, sep, _ = raw.rpartition(b"Content-Transfer-Encoding: base64")
    garbage = head + sep + b"\n\n!!!not*base64!!!\n"
    assert verify_message(garbage, anchors=[], at=AT).status == "invalid"
    assert (
        verify_message(
            multipart_signed(text_entity(), b"\x30\x80\x06", micalg="sha-256"), anchors=[], at=AT
        ).status
        == "invalid"
    )


@shared_corpus
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=3000), flip=st.integers(min_value=0, max_value=255))
def test_any_mutation_of_a_signed_message_yields_a_verdict(cut, flip):
    raw = Path(corpus_file("smime/tb-nss-alice.sig.SHA256.opaque.eml")).read_bytes()
    mutated = bytearray(raw[:cut] + raw[cut + 1 :]) if cut % 2 else bytearray(raw)
    if mutated:
        mutated[cut % len(mutated)] ^= flip
    result = verify_message(bytes(mutated), anchors=anchors(*TB), at=NOW)
    assert result.status in STATUSES


# The strict DER reader (smime_der) is a fast path: wherever it reads a
# signature, the verdict must be the one asn1crypto's reader gives.
DETACHED_SAMPLE = "smime/tb-nss-alice.dsig.SHA256.multipart.eml"


def _asn1crypto_only():
    return mock.patch("bot.parse.smime.verify.read_signed_data", lambda der: None)


def _signature_der(raw: bytes) -> tuple[bytes, bytes]:
    """(the signature part's DER, the message with a placeholder where its base64 was)."""
    _, entity, _ = find_smime(raw)
    part = split_multipart(entity, entity.param("boundary"))[1]
    body = parse_entity(part).body.rstrip()
    return decode_body(parse_entity(part)), raw.replace(body, b"@SIGNATURE@")


@shared_corpus
def test_der_reader_reads_the_usual_detached_signature():
    der, _ = _signature_der(corpus_file(DETACHED_SAMPLE).read_bytes())
    assert read_signed_data(der) is not None


@shared_corpus
@pytest.mark.parametrize(
    ("name", "anchor_files", "at"),
    [c[:3] for c in CORPUS_CASES],
    ids=[f"{c[0].split('/')[1]}-{c[3]}" for c in CORPUS_CASES],
)
def test_der_reader_and_asn1crypto_reach_the_same_verdict(name, anchor_files, at):
    fast = verify(name, anchor_files, at)
    with _asn1crypto_only():
        general = verify(name, anchor_files, at)
    assert fast == general


@shared_corpus
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(at=st.integers(min_value=0, max_value=4000), flip=st.integers(min_value=1, max_value=255))
def test_any_mutation_of_a_detached_signature_gets_the_same_verdict_from_both_readers(at, flip):
    der, template = _signature_der(corpus_file(DETACHED_SAMPLE).read_bytes())
    mutated = bytearray(der)
    mutated[at % len(mutated)] ^= flip
    raw = template.replace(b"@SIGNATURE@", base64.encodebytes(bytes(mutated)).rstrip())
    fast = verify_message(raw, anchors=anchors(*TB), at=NOW)
    with _asn1crypto_only():
        general = verify_message(raw, anchors=anchors(*TB), at=NOW)
    assert fast == general


@settings(max_examples=300, deadline=None)
@given(
    body=st.lists(st.sampled_from([b"\n", b"-", b"--b", b"\n--b", b"x", b"\r\n"]), max_size=200),
    start=st.integers(min_value=0, max_value=50),
)
def test_delimiter_search_by_hyphen_finds_what_a_plain_search_finds(body, start):
    joined = b"".join(body)
    assert _find_delimiter_line(joined, b"\n--b", start) == joined.find(b"\n--b", start)


HOSTILE_CERTIFICATES = """
import warnings
from datetime import datetime, timedelta, timezone
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
with warnings.catch_warnings():  # making them is the test's business, not the subject
    warnings.simplefilter("ignore")
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "NOT-A-COUNTRY",
                                         _validate=False),
                      x509.NameAttribute(NameOID.COMMON_NAME, "odd")])
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    der = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
           .public_key(key.public_key()).serial_number(1).not_valid_before(now)
           .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256())
           .public_bytes(Encoding.DER))
# The serial INTEGER (02 01 01) made zero: a mis-issuance CAs report.
at = der.index(bytes([0x02, 0x01, 0x01]))
zero_serial = der[:at + 2] + bytes([0]) + der[at + 3:]
from bot.parse.certlists.read import iter_certificate_list
from bot.parse.smime.chain import _safe_name
from bot.parse.smime.cms import _load_each
print(_safe_name(x509.load_der_x509_certificate(der).subject))
print(len(_load_each([zero_serial], x509.load_der_x509_certificate, "certificate")))
print(*[type(item).__name__ for item in iter_certificate_list("zero.der", zero_serial)])
"""


def test_hostile_certificate_fields_are_read_without_noise_in_the_log():
    """A country that is not two letters, a serial that is zero: hostile mail and CAs'
    lists carry such certificates, and cryptography warns on stderr about each.
    The operator's log must not fill with that (found by the mutation test above)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", HOSTILE_CERTIFICATES], capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parents[1], check=True)
    assert result.stdout.split() == ["CN=odd,C=NOT-A-COUNTRY", "1", "CertRecord"]
    assert result.stderr == ""


def _with_version(der: bytes, version: int) -> bytes:
    """A certificate's DER with its version field ([0] INTEGER 2, i.e. v3) set to `version`."""
    at = der.index(b"\xa0\x03\x02\x01\x02") + 4
    return der[:at] + bytes([version]) + der[at + 1:]


@shared_corpus
def test_an_extra_certificate_with_an_impossible_version_is_skipped_not_fatal():
    """cryptography raises InvalidVersion (not a ValueError) for such a certificate;
    one of them among a signature's certificates must not make a good signature
    "unreadable": it is skipped like any other broken certificate."""
    sample = corpus_file(DETACHED_SAMPLE).read_bytes()
    der, template = _signature_der(sample)
    info = cms.ContentInfo.load(der)
    certificates = info["content"]["certificates"]
    extra = _with_version(certificates[0].chosen.dump(), 5)
    certificates.append(cms.CertificateChoices.load(extra))
    raw = template.replace(b"@SIGNATURE@", base64.encodebytes(info.dump(force=True)).rstrip())
    result = verify_message(raw, anchors=anchors(*TB), at=NOW)
    assert (result.status, result.reason) == ("valid", verify_message(
        sample, anchors=anchors(*TB), at=NOW).reason)


@pytest.mark.parametrize("opaque", [False, True], ids=["multipart/signed", "pkcs7-mime"])
@pytest.mark.parametrize("levels", [1, 2])
def test_a_signature_inside_a_multipart_beside_a_large_part_is_found(tmp_path, pki, opaque,
                                                                      levels):
    signed = openssl_sign(tmp_path, pki["rsa"], text_entity("Revoke 3 certificates.\n"),
                          opaque=opaque)
    # The signed entity, without the top-level headers openssl writes, as a part.
    split = re.search(rb"\r?\n\r?\n", signed)
    assert split is not None
    headers, body = signed[:split.start()], signed[split.end():]
    entity = b"\r\n".join(line for line in headers.replace(b"\r\n", b"\n").split(b"\n")
                          if line.lower().startswith((b"content-", b"mime-", b"\t", b" ")))
    part = entity + b"\r\n\r\n" + body
    filler = (b"Content-Type: text/csv; name=list.csv\r\nContent-Transfer-Encoding: base64\r\n"
              b"\r\n" + base64.encodebytes(b"serial,issuer\r\n" * 20_000).replace(b"\n", b"\r\n"))
    for level in range(levels):
        boundary = f"mixed-{level}".encode()
        part = (b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n--'
                + boundary + b"\r\n" + filler + b"\r\n--" + boundary + b"\r\n" + part
                + b"\r\n--" + boundary + b"--\r\n")
    raw = b"From: alice@ca.example\r\nSubject: the list\r\nMIME-Version: 1.0\r\n" + part
    result = verify_message(raw, anchors=[pki["root"].cert], at=AT)
    assert result.status == "valid", result.reason
    assert "inside a multipart" in result.reason
