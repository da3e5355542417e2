"""Helpers for the program-side stories: a bot with roots and staff certificates, commands, ticks.

Built on tests/harness.py: the same real SMTP intake and relay sink. Adds
what the staff stories need: roots enrolled for Example CA, a staff S/MIME
PKI, signed staff mails (cryptography's PKCS7SignatureBuilder, through
bot.outbox.signing), moving the clock and running the scheduler as `tick`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.clock import FixedClock
from bot.config import load_config
from bot.operator.views import incident_json
from bot.outbox.signing import sign_message
from bot.service.scheduler import run_scheduler
from storage import queries
from tests.harness import (
    CA_CONTACT,
    COMPLETE_FORM,
    STAFF,
    RunningBot,
    Sink,
    free_port,
    make_mail,
    write_config,
)
from tests.smime_factory import Identity, make_ca, make_signer, pem, with_signing_time

ROOT_NAME = "Example Root R1"
OTHER_ROOT_NAME = "Example Root R2"


@dataclass
class Pki:
    staff_ca: Identity
    alice: Identity  # the staff member's signing identity, issued by staff_ca
    roots: dict[str, Identity]


def make_pki() -> Pki:
    staff_ca = make_ca("Program Staff CA", slot=1)
    return Pki(staff_ca=staff_ca, alice=make_signer(staff_ca, STAFF, slot=2),
               roots={ROOT_NAME: make_ca(ROOT_NAME, slot=3),
                      OTHER_ROOT_NAME: make_ca(OTHER_ROOT_NAME, slot=4)})


def _edit_config(path: Path, pki: Pki, staff_auth: str) -> None:
    base = path.parent
    (base / "staff-ca.pem").write_bytes(pem(pki.staff_ca.cert))
    for i, root in enumerate(pki.roots.values()):
        (base / f"root{i}.pem").write_bytes(pem(root.cert))
    roots = ", ".join(f'"root{i}.pem"' for i in range(len(pki.roots)))
    text = path.read_text()
    text = text.replace(f'auth = "{staff_auth}"',
                        f'auth = "{staff_auth}"\ncertificates = ["staff-ca.pem"]')
    text = text.replace('name = "Example CA"\n', f'name = "Example CA"\nroots = [{roots}]\n', 1)
    path.write_text(text)


@contextmanager
def story_bot(tmp_path: Path, at: datetime, *, ruleset: str = "2019-03",
              staff_auth: str = "none", pki: Pki | None = None,
              extra: str = "", staff: Sequence[str] = (STAFF,)
              ) -> Iterator[tuple[RunningBot, Sink, Pki]]:
    """A running bot whose Example CA has two roots and whose staff have a signing CA."""
    pki = pki or make_pki()
    sink = Sink().start()
    path = write_config(tmp_path, smtp_port=free_port(), relay_port=sink.port, ruleset=ruleset,
                        staff_auth=staff_auth, extra=extra, staff=staff)
    _edit_config(path, pki, staff_auth)
    bot = RunningBot(load_config(path), FixedClock(at)).start()
    try:
        yield bot, sink, pki
    finally:
        bot.stop()
        sink.stop()


def send(bot: RunningBot, raw: bytes) -> None:
    """Send with CRLF line ends: smtplib sends bytes as given, and bare LFs make the
    whole mail one line to the server, refused once it passes 1,000 octets."""
    bot.send(re.sub(rb"(?<!\r)\n", b"\r\n", raw))


def notify(bot: RunningBot, sink: Sink, form: str = COMPLETE_FORM) -> str:
    """The CA mails the form; returns the incident id from its (new) acknowledgement."""
    is_ack = sink.to(CA_CONTACT, "Notification received")
    before = count(sink, is_ack)
    send(bot, make_mail(CA_CONTACT, "Security incident notification", form))
    ack = sink.wait_for(is_ack, count=before + 1)[-1]
    return ack.subject.split("[", 1)[1].split("]", 1)[0]


def staff_mail(body: str, incident_id: str | None = None, *, signer: Identity | None = None,
               sender: str = STAFF, subject: str | None = None,
               signed_at: datetime | None = None, **headers: str) -> bytes:
    """A staff member's mail; signed by `signer` (at `signed_at`: the bot judges a
    signing time against its own clock, and cryptography writes the wall clock).
    `headers` are extra header fields, `In_Reply_To="<…>"` for In-Reply-To."""
    subject = subject or (f"Re: [{incident_id}] Notification received" if incident_id
                          else "status please")
    raw = make_mail(sender, subject, body,
                    headers={k.replace("_", "-"): v for k, v in headers.items()})
    if signer is None:
        return raw
    signed = sign_message(raw, certificate=signer.cert, private_key=signer.key)
    return signed if signed_at is None else with_signing_time(signed, signer, signed_at)


def command(bot: RunningBot, sink: Sink, body: str, incident_id: str | None = None, *,
            signer: Identity | None = None, expect: str = "Done") -> Any:
    """Staff send commands; returns the reply whose subject has `expect` (Done, Status, error)."""
    def is_reply(r: Any) -> bool:
        return STAFF in r.recipients and expect in r.subject

    before = count(sink, is_reply)
    send(bot, staff_mail(body, incident_id, signer=signer, signed_at=bot.clock.now()))
    return sink.wait_for(is_reply, count=before + 1)[-1]


def tick(bot: RunningBot, at: datetime) -> None:
    """`rootnotify tick --now AT`: move the clock and run the scheduler once; no job may fail.

    The scheduler logs a failing job and goes on with the others, so a story
    that did not look would pass over a crash in its reminders.
    """
    bot.clock.set(at)
    report = run_scheduler(bot.ctx)
    assert report.errors == {}, report.errors
    bot.service.queued_soon()


def show(bot: RunningBot, incident_id: str) -> dict[str, Any]:
    with bot.ctx.db.read() as session:
        return incident_json(session, queries.incident(session, incident_id), bot.clock.now())


def count(sink: Sink, predicate: Callable[[Any], bool]) -> int:
    return len([r for r in sink.received if predicate(r)])


def deadline(data: dict[str, Any], kind: str, state: str | None = None) -> list[dict[str, Any]]:
    return [d for d in data["deadlines"] if d["kind"] == kind
            and (state is None or d["state"] == state)]
