"""Test helpers that read like the story: a relay sink, a running bot, mail sent over SMTP.

Everything is real: the bot listens on 127.0.0.1, mail goes over smtplib,
and the bot's own mail arrives at an aiosmtpd sink that stands in for the
program's relay. Waiting is on events (a condition variable), never sleeps.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from aiosmtpd.controller import Controller

from bot.clock import FixedClock
from bot.config import Config, load_config
from bot.service.app import Service

STAFF = "alice@program.test"
# A second staff member, configured where a test needs a team: never sends a command.
OTHER_STAFF = "bob@program.test"
BOT = "rootnotify@program.test"
CA_CONTACT = "incidents@exampleca.test"
CA_OTHER_CONTACT = "security@exampleca.test"
OTHER_CA_CONTACT = "pki@otherca.test"

# The command line as a user runs it, started beside this interpreter rather than
# from PATH: a virtualenv that is not activated has no `rootnotify` on PATH.
ROOTNOTIFY = [sys.executable, "-m", "bot.cli"]

# Long enough for a slow CI machine; a test that waits this long has failed.
WAIT_SECONDS = 20.0
# How often a bounded wait on state that sends no event (database rows, a
# poller's counters) looks again.
POLL_SECONDS = 0.05

COMPLETE_FORM = """\
CA name: Example CA
Incident type: mis-issuance
When did the incident occur: 2026-11-25T14:05:00Z
Who detected the incident: An external researcher (J. Doe)
Who perpetrated the incident (if known): unknown
When the CA discovered the incident: 2026-11-26T09:30:00Z
Where the incident occurred: Issuing CA "Example Issuing CA 2", Frankfurt data centre
Which roots (and end-entity certificates, if requested) were affected: Example Root R1
Which sub-CAs were affected: Example Issuing CA 2
What the CA believes the underlying cause is: A CAA check skipped for IDN domains
Remedial measures taken or planned: Fixed the check; revoking 12 certificates
Any other information the CA believes appropriate: none
"""


def numbered_form(n: int) -> str:
    """COMPLETE_FORM as the n-th of several incidents: the same form again within a day is
    that notification re-sent (bot/decide/handlers/duplicates.py), so each differs in one answer."""
    return COMPLETE_FORM.replace("appropriate: none", f"appropriate: incident {n} of a series")


def eventually(what: str, predicate: Callable[[], object],
               timeout: float = WAIT_SECONDS) -> object:
    """Wait, bounded, until `predicate()` is true and return its value; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout}s for {what}")
        time.sleep(POLL_SECONDS)
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    envelope_from: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        msg = self.message
        part = msg.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""


class SinkHandler:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.cond = threading.Condition()
        self.reply: str = "250 OK"
        # Recipients the relay answers with something else than 250 at RCPT.
        self.rcpt_replies: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address,  # type: ignore[no-untyped-def]
                          rcpt_options) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        if not self.reply.startswith("250"):
            return self.reply
        with self.cond:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          envelope.original_content or envelope.content))
            self.cond.notify_all()
        return "250 OK"


class Sink:
    """A real SMTP server standing in for the relay; collects what the bot sends."""

    def __init__(self) -> None:
        self.handler = SinkHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     server_hostname="sink.test")

    def start(self) -> Sink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        with self.handler.cond:
            return list(self.handler.received)

    def wait_for(self, predicate: Callable[[Received], bool], count: int = 1,
                 timeout: float = WAIT_SECONDS) -> list[Received]:
        """Wait until `count` received mails satisfy `predicate`; return them."""
        with self.handler.cond:
            ok = self.handler.cond.wait_for(
                lambda: len([r for r in self.handler.received if predicate(r)]) >= count,
                timeout=timeout)
            found = [r for r in self.handler.received if predicate(r)]
        if not ok:
            subjects = [r.subject for r in self.received]
            raise AssertionError(f"waited {timeout}s for {count} mail(s); got {subjects}")
        return found

    def to(self, address: str, kind_in_subject: str = "") -> Callable[[Received], bool]:
        return lambda r: address in r.recipients and kind_in_subject in r.subject


def write_config(tmp_path: Path, *, smtp_port: int, relay_port: int, ruleset: str = "2019-03",
                 staff_auth: str = "none", extra: str = "", timezone: str = "UTC",
                 outgoing_mode: str = "smtp", imap: str = "",
                 storage_url: str = "sqlite:///var/rootnotify.db",
                 staff: Sequence[str] = (STAFF,), max_message_size: int = 1048576) -> Path:
    """The test configuration; `imap` is the body of an [imap] table (empty: none)."""
    staff_list = ", ".join(f'"{address}"' for address in staff)
    path = tmp_path / "config.toml"
    path.write_text(f"""
[bot]
address = "{BOT}"
incident_prefix = "INC"
data_dir = "var"
timezone = "{timezone}"
ruleset = "{ruleset}"

[storage]
url = "{storage_url}"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
max_message_size = {max_message_size}

[outgoing]
mode = "{outgoing_mode}"
host = "127.0.0.1"
port = {relay_port}
from = "Root Program <{BOT}>"

[staff]
addresses = [{staff_list}]
auth = "{staff_auth}"
{"[imap]" if imap else ""}
{imap}

[[ca]]
name = "Example CA"
contacts = ["{CA_CONTACT}", "{CA_OTHER_CONTACT}"]

[[ca]]
name = "Other CA"
contacts = ["{OTHER_CA_CONTACT}"]
{extra}
""")
    return path


def make_mail(sender: str, subject: str, body: str, *, to: str = BOT,
              message_id: str | None = None, in_reply_to: str | None = None,
              date: datetime | None = None, headers: dict[str, str] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    msg["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@{sender.split('@')[1]}>"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    # CRLF, as every real client sends it (smtplib passes bytes through unchanged).
    return msg.as_bytes(policy=email.policy.SMTP)


class RunningBot:
    """`rootnotify serve`'s Service, in a thread with its own event loop."""

    def __init__(self, config: Config, clock: FixedClock) -> None:
        self.config = config
        self.clock = clock
        self.loop = asyncio.new_event_loop()
        self.service = Service(config, clock)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> RunningBot:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.service.start(), self.loop).result(WAIT_SECONDS)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.service.stop(), self.loop).result(WAIT_SECONDS * 3)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT_SECONDS)

    def send(self, raw: bytes, sender: str | None = None, to: str = BOT) -> dict:
        """Send over SMTP; returns smtplib's refused-recipients dict (empty when accepted)."""
        mail_from = sender if sender is not None else _header_sender(raw)
        with smtplib.SMTP("127.0.0.1", self.config.smtp.port, timeout=WAIT_SECONDS) as smtp:
            return smtp.sendmail(mail_from, [to], raw)

    @property
    def ctx(self):  # type: ignore[no-untyped-def]
        return self.service.ctx


def _header_sender(raw: bytes) -> str:
    msg = email.message_from_bytes(raw)
    return email.utils.parseaddr(msg.get("From", ""))[1]


@contextmanager
def running_bot(tmp_path: Path, *, at: datetime | None = None, **config_kw: object
                ) -> Iterator[tuple[RunningBot, Sink]]:
    sink = Sink().start()
    path = write_config(tmp_path, smtp_port=free_port(), relay_port=sink.port,
                        **config_kw)  # type: ignore[arg-type]
    config = load_config(path)
    bot = RunningBot(config, FixedClock(at or datetime(2026, 11, 26, 12, 0, tzinfo=UTC))).start()
    try:
        yield bot, sink
    finally:
        bot.stop()
        sink.stop()
