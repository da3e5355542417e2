"""Our signed outgoing mail: openssl and our verifier accept it, and its headers stay readable."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default

import pytest

from bot.outbox.signing import sign_message
from bot.parse.smime.verify import verify_message
from tests.smime_factory import AT, make_ca, make_signer, openssl_verify

ACK = (
    b"From: Root Program <rootnotify@rootprogram.example>\r\n"
    b"To: security@ca.example\r\n"
    b"Subject: [INC-2026-0001] Acknowledgement\r\n"
    b"Message-ID: <ack-1@rootprogram.example>\r\n"
    b"Date: Mon, 01 Jun 2026 12:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"\r\n"
    b"We received your notification at 2026-06-01 11:58 UTC: on time.\r\n"
)


@pytest.fixture(scope="module")
def staff():
    root = make_ca("Root Program Staff Root", slot=20)
    intermediate = make_ca("Root Program Staff CA", issuer=root, slot=21)
    return {
        "root": root,
        "intermediate": intermediate,
        "rsa": make_signer(intermediate, "rootnotify@rootprogram.example", slot=22),
        "ec": make_signer(intermediate, "rootnotify@rootprogram.example", key_kind="ec", slot=23),
    }


@pytest.mark.parametrize(
    ("kind", "digest", "pss"),
    [("rsa", "sha256", False), ("rsa", "sha512", True), ("ec", "sha384", False)],
)
def test_signed_acknowledgement_verifies_with_openssl_and_with_us(
    tmp_path, staff, kind, digest, pss
):
    signer = staff[kind]
    signed = sign_message(
        ACK,
        certificate=signer.cert,
        private_key=signer.key,
        chain=(staff["intermediate"].cert,),
        digest=digest,
        rsa_pss=pss,
    )
    checked = openssl_verify(tmp_path, signed, staff["root"].cert)
    assert checked.returncode == 0, checked.stderr.decode()
    assert b"on time" in (tmp_path / "verified-content.eml").read_bytes()

    ours = verify_message(
        signed,
        anchors=[staff["root"].cert],
        at=AT,
        from_address="rootnotify@rootprogram.example",
    )
    assert (ours.status, ours.digest_algorithm, ours.from_mismatch) == ("valid", digest, False)


def test_envelope_headers_stay_on_the_outer_entity(staff):
    signed = sign_message(ACK, certificate=staff["rsa"].cert, private_key=staff["rsa"].key)
    outer = email.message_from_bytes(signed, policy=default)
    assert outer.get_content_type() == "multipart/signed"
    assert outer["Subject"] == "[INC-2026-0001] Acknowledgement"
    assert outer["Message-ID"] == "<ack-1@rootprogram.example>"
    assert outer["To"] == "security@ca.example"
    assert outer["From"].addresses[0].addr_spec == "rootnotify@rootprogram.example"
    body, signature = outer.get_payload()
    assert body.get_content_type() == "text/plain" and body["Subject"] is None
    assert signature.get_content_type() in {
        "application/pkcs7-signature",
        "application/x-pkcs7-signature",
    }
    assert signed.count(b"\n") == signed.count(b"\r\n")  # ready for SMTP as is


def test_email_message_objects_can_be_signed(tmp_path, staff):
    message = EmailMessage()
    message["From"] = "rootnotify@rootprogram.example"
    message["To"] = "security@ca.example"
    message["Subject"] = "Request: certificate list"
    message.set_content("Please send the list of affected certificates.\n", cte="quoted-printable")
    signed = sign_message(
        message,
        certificate=staff["rsa"].cert,
        private_key=staff["rsa"].key,
        chain=(staff["intermediate"].cert,),
    )
    assert openssl_verify(tmp_path, signed, staff["root"].cert).returncode == 0
    assert verify_message(signed, anchors=[staff["root"].cert], at=AT).status == "valid"


def test_message_without_content_type_is_signed_as_plain_text(staff):
    bare = b"From: a@rootprogram.example\r\nSubject: bare\r\n\r\nhello\r\n"
    signed = sign_message(
        bare,
        certificate=staff["rsa"].cert,
        private_key=staff["rsa"].key,
        chain=(staff["intermediate"].cert,),
    )
    result = verify_message(signed, anchors=[staff["root"].cert], at=AT)
    assert result.status == "valid"
    assert (result.content or b"").startswith(b"Content-Type: text/plain")


def test_altered_in_transit_fails_both_verifiers(tmp_path, staff):
    signed = sign_message(
        ACK,
        certificate=staff["rsa"].cert,
        private_key=staff["rsa"].key,
        chain=(staff["intermediate"].cert,),
    )
    altered = signed.replace(b"on time", b"late!!!")
    assert openssl_verify(tmp_path, altered, staff["root"].cert).returncode != 0
    assert verify_message(altered, anchors=[staff["root"].cert], at=AT).status == "invalid"


def test_content_relays_could_rewrite_is_refused(staff):
    eight_bit = ACK.replace(b"on time", "à l'heure".encode())
    with pytest.raises(ValueError, match="8-bit"):
        sign_message(eight_bit, certificate=staff["rsa"].cert, private_key=staff["rsa"].key)
    with pytest.raises(ValueError, match="octets"):
        sign_message(
            ACK + b"x" * 2000 + b"\r\n", certificate=staff["rsa"].cert, private_key=staff["rsa"].key
        )
