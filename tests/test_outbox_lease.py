"""An outgoing mail's claim is a lease: its sender hands it over only while it holds it.

A sender records what became of a mail only while the claim is still its
own: a host (here a `rootnotify tick` process) that took the mail over after
the lease ran out owns its outcome. And a sender does not start a relay
transaction its lease would not outlast. On SQLite, as the whole suite runs;
tests/test_two_hosts_sending.py has the same on PostgreSQL with two hosts.
"""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest

from bot.clock import as_utc, iso
from bot.context import Context
from bot.errors import TemporaryDeliveryError
from bot.outbox.owner import lease_owner
from bot.outbox.sender import (
    CLAIM_LEASE,
    RELAY_TIMEOUT_SECONDS,
    Refused,
    deliver_due,
    transport_for,
)
from storage.models import OUT_QUEUED, OUT_SENT
from tests.harness import CA_CONTACT, CA_OTHER_CONTACT, ROOTNOTIFY, Sink
from tests.test_partial_delivery import NOW, _acknowledge, _copies, _row, ctx, relay  # noqa: F401
from tests.together import ROOT


class TakenOverMidSend:
    """The relay is so slow that the lease runs out meanwhile and another host sends the
    mail; then this sender's own attempt ends as `ends` says (taken, or deferred)."""

    def __init__(self, context: Context, ends: str) -> None:
        self.relay = transport_for(context.config)
        self.ctx = context
        self.ends = ends
        self.other_host_at = NOW + CLAIM_LEASE + timedelta(seconds=1)

    def send(self, envelope_from: str, recipients: list[str], data: bytes) -> Refused:
        done = subprocess.run([*ROOTNOTIFY, "--config", str(self.ctx.config.path),
                               "tick", "--now", iso(self.other_host_at) or ""],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "1 sent" in " ".join(done.stdout.split()), done
        if self.ends == "deferred":
            raise TemporaryDeliveryError("451 4.3.0 try again later")
        return self.relay.send(envelope_from, recipients, data)

    def close(self) -> None:
        self.relay.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("ends", ["taken", "deferred"])
def test_a_sender_whose_mail_another_host_took_over_records_nothing_for_it(ctx, relay, ends):  # noqa: F811
    ack = _acknowledge(ctx)
    transport = TakenOverMidSend(ctx, ends)
    report = deliver_due(ctx, transport)

    row = _row(ctx, ack)
    # The other host's record stands: sent at its time, its claim given back, no retry planned.
    assert (row.status, as_utc(row.sent_at), row.claimed_by, row.lease_until) == (  # type: ignore[arg-type]
        OUT_SENT, transport.other_host_at, None, None)
    assert (row.last_error, row.attempts) == (None, 2)
    assert (report.sent, report.retried, report.failed) == (0, 0, 0)
    # Both copies reached the relay (the price of at-least-once): one Message-ID.
    copies = 2 if ends == "taken" else 1
    assert len(_copies(relay, ack)) == copies


class Slow:
    """A relay transaction that takes 31 s of the clock: the lease of the next mail in the
    batch would run out within the relay's timeout."""

    def __init__(self, context: Context) -> None:
        self.relay = transport_for(context.config)
        self.ctx = context

    def send(self, envelope_from: str, recipients: list[str], data: bytes) -> Refused:
        refused = self.relay.send(envelope_from, recipients, data)
        self.ctx.clock.advance(seconds=CLAIM_LEASE.total_seconds() - RELAY_TIMEOUT_SECONDS + 1)
        return refused

    def close(self) -> None:
        self.relay.close()  # type: ignore[attr-defined]


def test_a_mail_whose_lease_would_run_out_during_the_relays_timeout_waits_for_its_next_claim(
        ctx, relay: Sink):  # noqa: F811
    first, second = _acknowledge(ctx), _acknowledge(ctx)
    deliver_due(ctx, Slow(ctx))

    assert _copies(relay, first) == [[CA_CONTACT, CA_OTHER_CONTACT]]
    assert _copies(relay, second) == []
    held = _row(ctx, second)
    assert (held.status, held.claimed_by, as_utc(held.lease_until)) == (  # type: ignore[arg-type]
        OUT_QUEUED, lease_owner(), NOW + CLAIM_LEASE)
    ctx.clock.set(NOW + CLAIM_LEASE)  # its lease has run out: claimed and sent again
    deliver_due(ctx, Slow(ctx))
    assert len(_copies(relay, second)) == 1
    assert (_row(ctx, second).status, _row(ctx, second).attempts) == (OUT_SENT, 2)
