"""The SMTP listener is safe to expose: loopback by default, STARTTLS, limits, clean answers.

Real listener, real sockets: a certificate made with cryptography for
STARTTLS, connection and recipient caps, the per-session command limit, and
a raw socket speaking garbage, overlong lines, DATA out of order and
pipelined abuse. Every answer is an SMTP reply; the listener stays up.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot.clock import FixedClock
from bot.config import SCHEMA, load_config
from tests.harness import (
    BOT,
    CA_CONTACT,
    RunningBot,
    Sink,
    free_port,
    make_mail,
    running_bot,
    write_config,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_the_listener_binds_loopback_unless_configured():
    assert SCHEMA["smtp"]["host"][1] == "127.0.0.1"


def _certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rootnotify.local")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("rootnotify.local")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "smtp.pem", folder / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextmanager
def bot_with_smtp(tmp_path: Path, smtp_lines: str) -> Iterator[RunningBot]:
    """A running bot whose [smtp] table has `smtp_lines` added."""
    sink = Sink().start()
    path = write_config(tmp_path, smtp_port=free_port(), relay_port=sink.port)
    path.write_text(path.read_text().replace(
        "max_message_size = 1048576", f"max_message_size = 1048576\n{smtp_lines}"))
    bot = RunningBot(load_config(path), FixedClock(NOW)).start()
    try:
        yield bot
    finally:
        bot.stop()
        sink.stop()


def test_starttls_with_the_configured_certificate(tmp_path):
    cert, key = _certificate(tmp_path)
    lines = f'tls_certificate = "{cert}"\ntls_key = "{key}"'
    with bot_with_smtp(tmp_path, lines) as bot:
        context = ssl.create_default_context(cafile=str(cert))
        with smtplib.SMTP("127.0.0.1", bot.config.smtp.port, local_hostname="client.test",
                          timeout=10) as smtp:
            smtp.ehlo()
            assert smtp.has_extn("starttls")
            code, _ = smtp.starttls(context=_context_for(context))
            assert code == 220
            smtp.ehlo()
            assert smtp.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[union-attr]
            assert smtp.sendmail(CA_CONTACT, [BOT], make_mail(CA_CONTACT, "tls", "hi")) == {}


def _context_for(context: ssl.SSLContext) -> ssl.SSLContext:
    # The certificate names rootnotify.local; smtplib checks it against "127.0.0.1".
    context.check_hostname = False
    return context


QUIET_SECONDS = 0.5  # no more reply within this long: the server has answered


def _read_all(s: socket.socket) -> bytes:
    out = b""
    s.settimeout(QUIET_SECONDS)
    while True:
        try:
            chunk = s.recv(65536)
        except (TimeoutError, OSError):
            return out
        if not chunk:
            return out
        out += chunk


def _talk(port: int, lines: list[bytes]) -> list[bytes]:
    """Send raw lines one by one, collect every reply line (the greeting first)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        replies = _read_all(s)
        for line in lines:
            try:
                s.sendall(line)
            except OSError:
                break
            replies += _read_all(s)
        return [r for r in replies.split(b"\r\n") if r]


def test_protocol_abuse_gets_clean_answers_and_the_listener_stays_up(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, _sink):
        port = bot.config.smtp.port
        replies = _talk(port, [b"EHLO x\r\n", b"\x00\xff garbage \x01\r\n", b"FOO BAR\r\n"])
        assert replies[0].startswith(b"220")
        assert all(r[:3].isdigit() or r[:4] == b"250-" for r in replies)
        assert any(r.startswith(b"500") for r in replies)
        # An overlong command line.
        assert any(r.startswith(b"500") for r in _talk(port, [b"EHLO " + b"a" * 5000 + b"\r\n"]))
        # DATA before MAIL and RCPT; RCPT before MAIL.
        replies = _talk(port, [b"EHLO x\r\n", b"DATA\r\n", b"RCPT TO:<" + BOT.encode() + b">\r\n"])
        assert any(r.startswith(b"503") for r in replies)
        # Pipelined abuse: a whole transaction plus junk in one write, a refused recipient.
        burst = (b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<victim@elsewhere.test>\r\n"
                 b"RCPT TO:<" + BOT.encode() + b">\r\nDATA\r\n"
                 b"Subject: p\r\n\r\nhi\r\n.\r\nNOOP\r\nQUIT\r\n")
        replies = _talk(port, [burst])
        assert any(r.startswith(b"550") for r in replies)  # relaying refused
        assert any(r.startswith(b"250 2.0.0 Stored") for r in replies)
        # Still serving.
        assert bot.send(make_mail(CA_CONTACT, "after abuse", "hi")) == {}


def test_recipient_cap_and_command_limit(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, _sink):
        port = bot.config.smtp.port
        cap = bot.config.smtp.max_recipients
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.ehlo()
            smtp.mail(CA_CONTACT)
            codes = [smtp.rcpt(f"rootnotify+{i}@program.test")[0] for i in range(cap + 2)]
        assert codes[:cap] == [250] * cap and codes[cap:] == [452, 452]
        limit = bot.config.smtp.command_call_limit
        replies = _talk(port, [b"NOOP\r\n" * (limit + 5)])
        assert any(r.startswith(b"421") for r in replies)


def test_connection_cap(tmp_path):
    with bot_with_smtp(tmp_path, "max_connections = 2") as bot:
        port = bot.config.smtp.port
        held = []
        try:
            for _ in range(2):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                assert s.recv(1024).startswith(b"220")
                held.append(s)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as third:
                assert third.recv(1024).startswith(b"421")
        finally:
            for s in held:
                s.close()
        # The slots come back when clients leave.
        assert bot.send(make_mail(CA_CONTACT, "after", "hi")) == {}
