"""The per-sender reply cap guards threads against loops; it never silences a new incident.

Nothing authenticates a CA's From, so anyone can spend a contact's daily cap
of automatic replies with forged updates. The contact's next real
notification is still acknowledged (to it, and in Cc to the CA's other
contact); staff's new-incident alert says how many replies were suppressed,
and so do the digest and `status --json`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.operator.health import health
from bot.service.scheduler import run_scheduler
from tests.harness import (
    CA_CONTACT,
    CA_OTHER_CONTACT,
    COMPLETE_FORM,
    STAFF,
    make_mail,
    running_bot,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FORGED = 45


def test_a_capped_contacts_new_notification_is_acknowledged_and_staff_told(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        cap = bot.config.bot.max_auto_replies_per_day
        assert cap == 40
        bot.send(make_mail(CA_CONTACT, "Security incident notification", COMPLETE_FORM))
        ack = sink.wait_for(sink.to(CA_CONTACT, "Notification received"))[0]
        first = ack.subject.split("[", 1)[1].split("]", 1)[0]
        for i in range(FORGED):
            bot.send(make_mail(CA_OTHER_CONTACT, f"Re: [{first}] update {i}",
                               f"Update number {i}.\n"))
        receipts = sink.wait_for(sink.to(CA_OTHER_CONTACT, "Update recorded"), count=cap)
        assert len(receipts) == cap

        key_compromise = COMPLETE_FORM.replace("mis-issuance", "key-compromise")
        bot.send(make_mail(CA_OTHER_CONTACT, "Key compromise", key_compromise))
        new = sink.wait_for(lambda r: "Notification received" in r.subject
                            and first not in r.subject)[0]
        assert new.recipients == [CA_OTHER_CONTACT, CA_CONTACT]  # To the sender, Cc the other
        assert str(new.message["Cc"]) == CA_CONTACT
        alert = sink.wait_for(lambda r: r.recipients == [STAFF] and "New incident" in r.subject
                              and first not in r.subject)[0]
        assert (f"Replies capped: {FORGED - cap} automatic replies to {CA_OTHER_CONTACT} "
                f"suppressed today") in alert.body
        assert len(sink.wait_for(sink.to(CA_OTHER_CONTACT, "Update recorded"), count=cap)) == cap

        data = health(bot.ctx)  # `status --json`, at the bot's clock
        assert data["replies_suppressed"] == {"last_24h": FORGED - cap,
                                              "to": {CA_OTHER_CONTACT: FORGED - cap}}
        assert any("suppressed by the daily cap" in n for n in data["needs_attention"])

        bot.clock.set(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
        run_scheduler(bot.ctx)
        bot.service.queued_soon()
        digest = sink.wait_for(sink.to(STAFF, "Daily digest 2026-11-27"))[0]
        section = digest.body.split("suppressed by the daily cap of 40")[1].split("\n\n")[0]
        assert f"- {CA_OTHER_CONTACT}: {FORGED - cap} not answered" in section
