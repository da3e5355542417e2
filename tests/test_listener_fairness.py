"""One client cannot lock out the others: caps per address, reserved slots, session deadlines.

The abusive client opens 100 connections from 127.0.0.1 and trickles a
byte of `NOOP` at a time over each, as a hostile peer would; the honest one
(an MTA at 127.0.0.2) delivers mail beside it and gets `250` within seconds
before, during and after, while the trickling sessions run into their
deadline and are closed with `421`.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import threading
import time
from datetime import UTC, datetime

from tests.harness import (
    BOT,
    CA_CONTACT,
    WAIT_SECONDS,
    make_mail,
)
from tests.test_listener_safety import bot_with_smtp

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
HONEST = "127.0.0.2"
ABUSER = "127.0.0.1"
# How long an honest delivery may take beside the abuser: "within seconds".
HONEST_SECONDS = 5.0
SESSION_TIMEOUT = 3


class Trickler:
    """Many connections from one address, each sent one byte of NOOP every half second."""

    def __init__(self, port: int, connections: int) -> None:
        self.greetings: list[bytes] = []
        self.held: list[socket.socket] = []
        for _ in range(connections):
            s = socket.create_connection(("127.0.0.1", port), timeout=WAIT_SECONDS,
                                         source_address=(ABUSER, 0))
            greeting = s.recv(1024)
            self.greetings.append(greeting)
            if greeting.startswith(b"220"):
                self.held.append(s)
            else:
                s.close()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        line, i = b"NOOP\r\n", 0
        while not self.stop.wait(0.5):  # the abuser's own pace, not a test wait
            for s in self.held:
                with contextlib.suppress(OSError):  # closed by the listener
                    s.send(line[i % len(line):i % len(line) + 1])
            i += 1

    def last_words(self) -> list[bytes]:
        """Block until the listener closes each held session; what it said last, each."""
        words = []
        for s in self.held:
            said = b""
            while chunk := s.recv(1024):
                said += chunk
            words.append(said.strip().split(b"\r\n")[-1])
        return words

    def close(self) -> None:
        self.stop.set()
        self.thread.join(WAIT_SECONDS)
        for s in self.held:
            s.close()


def deliver_honestly(port: int, subject: str) -> float:
    """An MTA at another address delivers one mail; returns how long it took to its 250."""
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=WAIT_SECONDS,
                      source_address=(HONEST, 0)) as smtp:
        assert smtp.sendmail(CA_CONTACT, [BOT], make_mail(CA_CONTACT, subject, "hi")) == {}
    return time.monotonic() - started


def test_an_abusive_client_beside_an_honest_one(tmp_path):
    with bot_with_smtp(tmp_path, f"session_timeout = {SESSION_TIMEOUT}") as bot:
        port = bot.config.smtp.port
        assert bot.config.smtp.max_connections == 100
        assert bot.config.smtp.max_connections_per_client == 5
        abuser = Trickler(port, 100)
        try:
            held_at = time.monotonic()
            assert [g[:3] for g in abuser.greetings].count(b"220") == 5
            assert abuser.greetings[5:] == [
                b"421 4.7.0 Too many connections from your address, try again later\r\n"] * 95
            assert deliver_honestly(port, "while the flood stands") < HONEST_SECONDS
            assert deliver_honestly(port, "while it trickles") < HONEST_SECONDS
            # The trickling sessions meet their deadline: 421, then closed.
            assert abuser.last_words() == [
                b"421 4.4.2 Session time limit exceeded, closing connection"] * 5
            lasted = time.monotonic() - held_at
            assert SESSION_TIMEOUT - 0.5 < lasted < SESSION_TIMEOUT + HONEST_SECONDS
        finally:
            abuser.close()
        assert deliver_honestly(port, "after") < HONEST_SECONDS


def test_a_share_of_the_slots_is_kept_for_clients_with_no_session(tmp_path):
    lines = "max_connections = 10\nmax_connections_per_client = 10\nreserved_percent = 30"
    with bot_with_smtp(tmp_path, lines) as bot:
        port = bot.config.smtp.port
        abuser = Trickler(port, 10)
        try:
            assert [g[:3] for g in abuser.greetings] == [b"220"] * 7 + [b"421"] * 3
            assert abuser.greetings[-1] == (b"421 4.7.0 The remaining connections are kept "
                                            b"for other clients, try again later\r\n")
            assert deliver_honestly(port, "into a reserved slot") < HONEST_SECONDS
        finally:
            abuser.close()


def test_the_programs_own_mx_may_be_exempted_from_the_per_client_cap(tmp_path):
    with bot_with_smtp(tmp_path, f'unlimited_clients = ["{ABUSER}"]') as bot:
        relay = Trickler(bot.config.smtp.port, 12)  # the MX, delivering in parallel
        try:
            assert [g[:3] for g in relay.greetings] == [b"220"] * 12
            assert deliver_honestly(bot.config.smtp.port, "beside the MX") < HONEST_SECONDS
        finally:
            relay.close()
