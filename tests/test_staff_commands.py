"""Staff run an incident by mail: commands are authenticated, checked all together, confirmed.

Forged commands (the right From, but no signature, a signature by someone
else, or a failing DKIM check) change nothing, get no reply, and show up in
the next digest.
"""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from unittest import mock

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.harness import CA_CONTACT, STAFF, make_mail
from tests.smime_factory import make_ca, make_signer
from tests.story import (
    command,
    count,
    deadline,
    notify,
    send,
    show,
    staff_mail,
    story_bot,
    tick,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def ca_mails(sink, word: str) -> int:  # type: ignore[no-untyped-def]
    return count(sink, lambda r: CA_CONTACT in r.recipients and word in r.subject)


def unauthenticated(bot, inc):  # type: ignore[no-untyped-def]
    return [e for e in show(bot, inc)["events"] if e["kind"] == "command-unauthenticated"]


def test_a_malformed_command_changes_nothing_and_is_answered_with_the_valid_forms(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        error = command(bot, sink, "/request certificate-list due 2026-11-29\n"
                        "/request certifcate-list\n/frobnicate", inc, expect="Command error")
        assert "nothing was changed" in error.subject
        assert "did you mean certificate-list" in error.body
        assert "unknown command /frobnicate" in error.body
        assert "/notice revoke-root ROOT [on DATE]" in error.body  # the valid forms
        assert deadline(show(bot, inc), "certificate-list") == []  # the good line did not run
        assert ca_mails(sink, "Request") == 0


def test_a_date_in_the_past_or_a_command_outside_a_thread_is_an_error(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        error = command(bot, sink, "/request final-report due 2026-11-01", inc,
                        expect="Command error")
        assert "in the past" in error.body
        error = command(bot, sink, "/close", None, expect="Command error")
        assert "needs an incident" in error.body
        assert show(bot, inc)["status"] == "open"


def test_status_in_the_thread_and_outside_it(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        command(bot, sink, "/request certificate-list due 2026-11-27", inc)
        tick(bot, NOW + timedelta(days=2))
        status = command(bot, sink, "/status", inc, expect="Status")
        assert f"{inc} (Example CA): open" in status.body
        assert "the list of mis-issued certificates" in status.body and "OVERDUE" in status.body
        overall = command(bot, sink, "/status", None, expect="Status")
        assert "1 open incident(s)" in overall.body
        assert f"{inc} (Example CA, mis-issuance): 1 open deadline(s), 1 overdue" in overall.body
        assert "[INC-" not in overall.subject


def test_requirements_close_and_reopen(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        done = command(bot, sink, "/require third-party-investigator\n/disqualify-audit\n"
                       "/note Browser vendors informed (P5)", inc)
        assert "Example CA was told" in done.body
        sink.wait_for(sink.to(CA_CONTACT, "third-party investigator"))
        sink.wait_for(sink.to(CA_CONTACT, "audit is disqualified"))
        kinds = [e["kind"] for e in show(bot, inc)["events"]]
        assert {"third-party-investigator-required", "audit-disqualified", "note"} <= set(kinds)

        command(bot, sink, "/request final-report due 2026-12-20\n/close", inc)
        data = show(bot, inc)
        assert data["status"] == "closed"
        assert deadline(data, "final-report")[0]["state"] == "cancelled"
        error = command(bot, sink, "/request info: more", inc, expect="Command error")
        assert "is closed; send /reopen first" in error.body
        command(bot, sink, "/reopen", inc)
        assert show(bot, inc)["status"] == "open"


def test_a_ca_contact_cannot_command(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        send(bot, make_mail(CA_CONTACT, f"Re: [{inc}] x", "/close\n"))
        sink.wait_for(sink.to(CA_CONTACT, "Update recorded"))
        assert show(bot, inc)["status"] == "open"


def test_smime_a_signed_command_runs_and_forged_ones_change_nothing(tmp_path):
    with story_bot(tmp_path, NOW, staff_auth="smime") as (bot, sink, pki):
        inc = notify(bot, sink)
        # Unsigned, with the right From.
        send(bot, staff_mail("/close", inc))
        # Signed by a certificate from a CA the program does not trust.
        stranger = make_signer(make_ca("Mallory CA", slot=6), STAFF, slot=7)
        send(bot, staff_mail("/close", inc, signer=stranger))
        # Signed under the staff CA, but by a certificate for someone else.
        bob = make_signer(pki.staff_ca, "bob@program.test", slot=8)
        send(bot, staff_mail("/close", inc, signer=bob))
        # The real one, signed by Alice: it runs, and the three before it did not.
        done = command(bot, sink, "/note signed", inc, signer=pki.alice)
        assert "Note recorded" in done.body
        assert show(bot, inc)["status"] == "open"
        forged = unauthenticated(bot, inc)
        assert len(forged) == 3
        reasons = " ".join(e["summary"] for e in forged)
        assert "unsigned" in reasons and "untrusted" in reasons and "bob@program.test" in reasons
        assert count(sink, lambda r: STAFF in r.recipients and "Done" in r.subject) == 1
        assert count(sink, lambda r: STAFF in r.recipients and "error" in r.subject) == 0

        tick(bot, NOW + timedelta(hours=21))  # the next morning's digest names them
        digest = sink.wait_for(sink.to(STAFF, "Daily digest 2026-11-27"))[0]
        section = digest.body.split("Unauthenticated staff commands")[1].split("Quarantined")[0]
        assert section.count(inc) == 3


def _dkim_key() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def _dkim_signed(body: str, inc: str, key: bytes, *, at: datetime = NOW,
                 headers: tuple[bytes, ...] = (b"from", b"to", b"subject", b"message-id"),
                 subject: str | None = None) -> bytes:
    """DKIM-signed as at `at`: dkimpy writes t= from its module's clock, given it here."""
    raw = staff_mail(body, inc, subject=subject).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    with mock.patch.object(dkim, "time", SimpleNamespace(time=at.timestamp)):
        signature = dkim.sign(raw, b"sel", b"program.test", key, include_headers=list(headers))
    return signature + raw


def test_dkim_a_pass_commands_and_a_failure_changes_nothing(tmp_path):
    private, record = _dkim_key()
    other_private, _ = _dkim_key()
    lookups: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes | None:  # the injected DNS answer
        lookups.append(name)
        return record if name == b"sel._domainkey.program.test." else None

    with story_bot(tmp_path, NOW, staff_auth="dkim") as (bot, sink, _pki):
        bot.service.ctx = dataclasses.replace(bot.ctx, dkim_dns=dns)
        inc = notify(bot, sink)
        send(bot, _dkim_signed("/close", inc, other_private))  # the key in DNS does not match
        send(bot, staff_mail("/close", inc))  # no signature at all
        bot.send(_dkim_signed("/note DKIM signed", inc, private))
        sink.wait_for(lambda r: STAFF in r.recipients and "Done" in r.subject)
        data = show(bot, inc)
        assert data["status"] == "open"
        assert any(e["kind"] == "note" for e in data["events"])
        reasons = " ".join(e["summary"] for e in unauthenticated(bot, inc))
        assert "does not verify" in reasons and "no DKIM signature" in reasons
        assert lookups  # the injected resolver answered; no network was used
