"""S/MIME over SMTP: signed, tampered and encrypted certificate lists, and our own signed mail.

The stories: the CA notifies and staff request the certificate list. The CA
sends it signed with `openssl cms -sign` by a certificate of its S/MIME CA
(configured as its `smime_anchors`): the receipt says the signature is valid.
A tampered copy is still recorded, its receipt says "signature invalid" and
staff are told. A list encrypted to the program without a key configured is
recorded as `encrypted` and staff are told; with the key it is decrypted and
counted. With a signing key configured, what the bot sends verifies with
`openssl cms -verify` against the program's CA.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.clock import FixedClock
from bot.config import load_config
from tests.harness import BOT, CA_CONTACT, STAFF, RunningBot, Sink, free_port, write_config
from tests.smime_factory import (
    Identity,
    make_ca,
    make_signer,
    openssl_encrypt,
    openssl_sign,
    openssl_verify,
    pem,
)
from tests.story import command, notify, send, show

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CSV_LIST = ("serial,issuer,domains\r\n"
            "0a1b2c,CN=Example Issuing CA 2,one.example.com\r\n"
            "0a1b2d,CN=Example Issuing CA 2,two.example.com\r\n")


@contextmanager
def smime_bot(tmp_path: Path, ca_smime: Identity, *, program: Identity | None = None,
              decrypt: bool = False, sign: bool = False,
              max_message_size: int = 1048576) -> Iterator[tuple[RunningBot, Sink]]:
    """A bot trusting `ca_smime` for Example CA; optionally with the program's keys."""
    sink = Sink().start()
    path = write_config(tmp_path, smtp_port=free_port(), relay_port=sink.port,
                        max_message_size=max_message_size)
    (tmp_path / "exampleca-smime.pem").write_bytes(pem(ca_smime.cert))
    anchors = 'smime_anchors = ["exampleca-smime.pem"]\n'
    text = path.read_text().replace('name = "Example CA"\n', f'name = "Example CA"\n{anchors}', 1)
    if program is not None:
        (tmp_path / "program.pem").write_bytes(pem(program.cert))
        (tmp_path / "program.key").write_bytes(pem(program.key))
        keys = ""
        if decrypt:
            keys += 'decryption_key = "program.key"\ndecryption_certificate = "program.pem"\n'
        if sign:
            keys += 'signing_key = "program.key"\nsigning_certificate = "program.pem"\n'
        text = text.replace(f'from = "Root Program <{BOT}>"\n',
                            f'from = "Root Program <{BOT}>"\n{keys}', 1)
    path.write_text(text)
    bot = RunningBot(load_config(path), FixedClock(NOW)).start()
    try:
        yield bot, sink
    finally:
        bot.stop()
        sink.stop()


def list_entity(csv_text: str = CSV_LIST) -> bytes:
    """The MIME entity a CA signs or encrypts: a note and the list as a 7-bit CSV attachment."""
    b = "list-boundary-7"
    return (f'Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n'
            f"--{b}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"The list is attached.\r\n"
            f"--{b}\r\nContent-Type: text/csv; name=list.csv\r\n"
            f"Content-Disposition: attachment; filename=list.csv\r\n"
            f"Content-Transfer-Encoding: 7bit\r\n\r\n{csv_text}"
            f"--{b}--\r\n").encode()


def headers(incident_id: str) -> dict[str, str]:
    return {"from": CA_CONTACT, "to": BOT, "subject": f"Re: [{incident_id}] Certificate list"}


def with_headers(raw: bytes, incident_id: str) -> bytes:
    head = "".join(f"{k.capitalize()}: {v}\r\n" for k, v in headers(incident_id).items())
    return head.encode() + raw


def requested(bot: RunningBot, sink: Sink) -> str:
    inc = notify(bot, sink)
    command(bot, sink, "/request certificate-list due 2026-12-05", inc)
    return inc


def staff_alert(sink: Sink, status: str) -> Any:
    return sink.wait_for(lambda r: STAFF in r.recipients and f"S/MIME {status}" in r.subject)[-1]


def inbound(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in data["messages"] if m["direction"] == "in"]


def test_a_signed_list_is_valid_and_a_tampered_one_invalid_but_recorded(tmp_path):
    ca_smime = make_ca("Example CA S/MIME CA", slot=41)
    signer = make_signer(ca_smime, CA_CONTACT, slot=42)
    with smime_bot(tmp_path, ca_smime) as (bot, sink):
        inc = requested(bot, sink)
        signed = openssl_sign(tmp_path, signer, list_entity(), headers=headers(inc))
        send(bot, signed)
        receipt = sink.wait_for(sink.to(CA_CONTACT, "Certificate list recorded"))[-1]
        assert "Signature of the list: signed, signature valid" in receipt.body
        assert "2 new certificate(s) recorded" in receipt.body
        assert inbound(show(bot, inc))[-1]["smime"] == "valid"

        tampered = signed.replace(b"0a1b2d", b"0a1b2e")
        assert tampered != signed
        send(bot, tampered)
        receipt = sink.wait_for(sink.to(CA_CONTACT, "Certificate list recorded"), count=2)[-1]
        assert "Signature of the list: signature invalid" in receipt.body
        alert = staff_alert(sink, "invalid")
        assert inc in alert.subject and CA_CONTACT in alert.body
        data = show(bot, inc)
        assert inbound(data)[-1]["smime"] == "invalid"
        assert inbound(data)[-1]["kind"] == "certificate-list"
        # Recorded all the same: the altered row is a third certificate.
        assert data["certificates"]["count"] == 3


def test_an_encrypted_list_without_a_key_is_recorded_and_staff_told(tmp_path):
    ca_smime = make_ca("Example CA S/MIME CA", slot=41)
    program = make_signer(make_ca("Program CA", slot=43), BOT, slot=44)
    with smime_bot(tmp_path, ca_smime) as (bot, sink):
        inc = requested(bot, sink)
        encrypted = openssl_encrypt(tmp_path, list_entity(), program.cert)
        send(bot, with_headers(encrypted, inc))
        alert = staff_alert(sink, "encrypted")
        assert "no key" in alert.body and inc in alert.subject
        data = show(bot, inc)
        assert inbound(data)[-1]["smime"] == "encrypted"
        assert data["certificates"]["count"] == 0
        assert any(e["kind"] == "smime-encrypted" for e in data["events"])


def test_with_the_key_an_encrypted_list_is_opened_and_our_mail_is_signed(tmp_path):
    ca_smime = make_ca("Example CA S/MIME CA", slot=41)
    program_ca = make_ca("Program CA", slot=43)
    program = make_signer(program_ca, BOT, slot=44)
    with smime_bot(tmp_path, ca_smime, program=program, decrypt=True, sign=True) as (bot, sink):
        inc = requested(bot, sink)
        encrypted = openssl_encrypt(tmp_path, list_entity(), program.cert)
        send(bot, with_headers(encrypted, inc))
        receipt = sink.wait_for(sink.to(CA_CONTACT, "Certificate list recorded"))[-1]
        assert "2 new certificate(s) recorded" in receipt.body
        assert show(bot, inc)["certificates"]["count"] == 2

        # Every mail we sent is signed, and an independent verifier agrees.
        verified = openssl_verify(tmp_path, receipt.data, program_ca.cert, at=NOW)
        assert verified.returncode == 0, verified.stderr.decode()
        # The signed part is the 7-bit body; the headers stay outside it, on the envelope.
        inner = (tmp_path / "verified-content.eml").read_bytes()
        assert b"quoted-printable" in inner and b"Subject:" not in inner
        ack = sink.wait_for(sink.to(CA_CONTACT, "Notification received"))[0]
        assert openssl_verify(tmp_path, ack.data, program_ca.cert, at=NOW).returncode == 0
        assert ack.message["Message-ID"] in [m["message_id"] for m in show(bot, inc)["messages"]]
        assert {m["smime"] for m in show(bot, inc)["messages"] if m["direction"] == "out"} \
            == {"valid"}


def test_a_signer_of_another_address_is_flagged_to_staff(tmp_path):
    ca_smime = make_ca("Example CA S/MIME CA", slot=41)
    other = make_signer(ca_smime, "pki-robot@exampleca.test", slot=45)
    with smime_bot(tmp_path, ca_smime) as (bot, sink):
        inc = requested(bot, sink)
        send(bot, openssl_sign(tmp_path, other, list_entity(), headers=headers(inc)))
        receipt = sink.wait_for(sink.to(CA_CONTACT, "Certificate list recorded"))[-1]
        assert "signature valid" in receipt.body and "does not name the From" in receipt.body
        alert = staff_alert(sink, "signer is not the sender")
        assert "does not name the From address" in alert.body
