"""A signed staff command counts once: copies, stale signatures and moved bodies are refused.

S/MIME signs the body only, so anyone holding one of alice's signed mails (a
Cc'd CA, a dossier exported with its raw mail) can send it again with a new
Message-ID, or with the Subject and In-Reply-To of another CA's incident.
Each such copy changes nothing; alice is told why, and so are all staff.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config import load_config
from tests.harness import (
    CA_CONTACT,
    COMPLETE_FORM,
    OTHER_CA_CONTACT,
    STAFF,
    free_port,
    make_mail,
    write_config,
)
from tests.story import command, count, deadline, notify, send, show, staff_mail, story_bot
from tests.test_staff_commands import _dkim_key, _dkim_signed

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
REQUEST = "/request certificate-list due 2026-12-20"


def notify_other_ca(bot, sink) -> str:  # type: ignore[no-untyped-def]
    send(bot, make_mail(OTHER_CA_CONTACT, "Security incident notification",
                        COMPLETE_FORM.replace("Example CA", "Other CA")))
    ack = sink.wait_for(sink.to(OTHER_CA_CONTACT, "Notification received"))[-1]
    return ack.subject.split("[", 1)[1].split("]", 1)[0]


def requests_to(sink, address: str) -> int:  # type: ignore[no-untyped-def]
    return count(sink, lambda r: address in r.recipients and "Request" in r.subject)


def refused(bot, sink, raw: bytes, n: int = 1):  # type: ignore[no-untyped-def]
    """Send `raw`; wait for alice's n-th refusal and the staff alert; return the refusal."""
    send(bot, raw)
    reply = sink.wait_for(lambda r: r.recipients == [STAFF] and "Command refused" in r.subject,
                          count=n)[-1]
    sink.wait_for(lambda r: "Signed command refused" in r.subject, count=n)
    return reply


def new_message_id(raw: bytes, value: str) -> bytes:
    return re.sub(rb"Message-ID: <[^>]+>", f"Message-ID: <{value}>".encode(), raw, count=1)


def refusals(bot, inc: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["summary"] for e in show(bot, inc)["events"]
            if e["kind"] == "command-signature-refused"]


def test_a_signed_command_sent_again_with_a_new_message_id_is_refused(tmp_path):
    with story_bot(tmp_path, NOW, staff_auth="smime") as (bot, sink, pki):
        inc = notify(bot, sink)
        genuine = staff_mail(REQUEST, inc, signer=pki.alice, signed_at=NOW)
        send(bot, genuine)
        sink.wait_for(lambda r: r.recipients == [STAFF] and "Done" in r.subject)
        assert requests_to(sink, CA_CONTACT) == 1

        reply = refused(bot, sink, new_message_id(genuine, "copy-1@program.test"))
        assert "replay: this signature was already used by message" in reply.body
        assert f"in {inc}" in reply.body
        data = show(bot, inc)
        assert len(deadline(data, "certificate-list")) == 1
        assert requests_to(sink, CA_CONTACT) == 1
        assert len(refusals(bot, inc)) == 1 and "replay" in refusals(bot, inc)[0]
        alert = sink.wait_for(lambda r: "Signed command refused: replay" in r.subject)[0]
        assert set(alert.recipients) == {STAFF}


def test_a_signed_command_moved_to_another_cas_incident_is_refused(tmp_path):
    with story_bot(tmp_path, NOW, staff_auth="smime") as (bot, sink, pki):
        inc = notify(bot, sink)
        other = notify_other_ca(bot, sink)
        genuine = staff_mail(REQUEST, inc, signer=pki.alice, signed_at=NOW)
        send(bot, genuine)
        sink.wait_for(lambda r: r.recipients == [STAFF] and "Done" in r.subject)

        # The same signed body, its Subject and thread rewritten to Other CA's incident.
        moved = new_message_id(genuine, "moved@program.test").replace(
            f"[{inc}]".encode(), f"[{other}]".encode())
        ack = sink.wait_for(sink.to(OTHER_CA_CONTACT, "Notification received"))[0]
        moved = moved.replace(b"Subject:", f"In-Reply-To: {ack.message['Message-ID']}\r\n"
                                           f"Subject:".encode(), 1)
        reply = refused(bot, sink, moved)
        assert "replay" in reply.body and other in reply.subject
        assert deadline(show(bot, other), "certificate-list") == []
        assert requests_to(sink, OTHER_CA_CONTACT) == 0
        assert len(refusals(bot, other)) == 1


def test_a_signed_text_naming_one_incident_does_not_run_in_another(tmp_path):
    with story_bot(tmp_path, NOW, staff_auth="smime") as (bot, sink, pki):
        inc = notify(bot, sink)
        other = notify_other_ca(bot, sink)
        quoting = f"{REQUEST}\n\nOn 26 Nov the bot wrote:\n> [{inc}] Notification received\n"
        signed = staff_mail(quoting, inc, signer=pki.alice, signed_at=NOW)
        # Never used yet, but sent first in Other CA's thread.
        moved = new_message_id(signed, "early-copy@program.test").replace(
            f"[{inc}]".encode(), f"[{other}]".encode(), 1)
        reply = refused(bot, sink, moved)
        assert (f"wrong incident: the signed text names {inc}, but the mail was sent in the "
                f"thread of {other}") in reply.body
        assert requests_to(sink, OTHER_CA_CONTACT) == 0
        # The refusal did not use the signature up: the genuine mail still runs where it names.
        send(bot, signed)
        sink.wait_for(lambda r: r.recipients == [STAFF] and "Done" in r.subject)
        assert len(deadline(show(bot, inc), "certificate-list")) == 1
        assert requests_to(sink, CA_CONTACT) == 1


def test_a_signing_time_far_from_the_receipt_is_stale(tmp_path):
    with story_bot(tmp_path, NOW, staff_auth="smime") as (bot, sink, pki):
        inc = notify(bot, sink)
        old = staff_mail(REQUEST, inc, signer=pki.alice, signed_at=NOW - timedelta(hours=49))
        reply = refused(bot, sink, old)
        assert ("stale: signed at 2026-11-24 11:00 UTC, received 2026-11-26 12:00 UTC; a signed "
                "command counts only within 48 h of its signing time") in reply.body
        ahead = staff_mail(REQUEST, inc, signer=pki.alice, signed_at=NOW + timedelta(hours=49))
        assert "stale: signed at 2026-11-28 13:00 UTC" in refused(bot, sink, ahead, 2).body
        assert deadline(show(bot, inc), "certificate-list") == []
        # Inside the window it counts.
        done = command(bot, sink, REQUEST, inc, signer=pki.alice)
        assert "Done" in done.subject
        assert requests_to(sink, CA_CONTACT) == 1


def test_the_signature_window_is_configurable(tmp_path: Path):
    path = write_config(tmp_path, smtp_port=free_port(), relay_port=free_port())
    assert load_config(path).staff.signature_window == timedelta(hours=48)
    path.write_text(path.read_text().replace('auth = "none"',
                                             'auth = "none"\nsignature_window = "96h"'))
    assert load_config(path).staff.signature_window == timedelta(hours=96)


def test_dkim_commands_need_subject_and_message_id_signed_and_count_once(tmp_path):
    private, record = _dkim_key()

    def dns(name: bytes, timeout: int = 5) -> bytes | None:  # the injected DNS answer
        return record if name == b"sel._domainkey.program.test." else None

    with story_bot(tmp_path, NOW, staff_auth="dkim") as (bot, sink, _pki):
        bot.service.ctx = dataclasses.replace(bot.ctx, dkim_dns=dns)
        inc = notify(bot, sink)
        # A signature over the body and From alone could be moved to any thread.
        send(bot, _dkim_signed("/close", inc, private, headers=(b"from", b"to")))
        genuine = _dkim_signed(REQUEST, inc, private)
        send(bot, genuine)
        sink.wait_for(lambda r: r.recipients == [STAFF] and "Done" in r.subject)
        forged = [e["summary"] for e in show(bot, inc)["events"]
                  if e["kind"] == "command-unauthenticated"]
        assert len(forged) == 1 and "does not cover subject, message-id (h=)" in forged[0]
        assert show(bot, inc)["status"] == "open"

        # A copy with a second Message-ID on top: dkimpy checks the signed (last) one and
        # passes; to the intake it is a new message. The signature has been used.
        copy = b"Message-ID: <dkim-copy@program.test>\r\n" + genuine
        reply = refused(bot, sink, copy)
        assert "replay: this signature was already used" in reply.body
        assert len(deadline(show(bot, inc), "certificate-list")) == 1
        assert requests_to(sink, CA_CONTACT) == 1

        stale = _dkim_signed("/note late", inc, private, at=NOW - timedelta(days=3))
        assert "stale: signed at 2026-11-23 12:00 UTC" in refused(bot, sink, stale, 2).body
