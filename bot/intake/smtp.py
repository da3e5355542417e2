"""The SMTP listener: check the recipient, store the message durably, then answer.

The handler is thin on purpose (aiosmtpd's model): it never parses or
decides; it hands the bytes to the group-commit writer and answers 250 only
once they are committed. Everything else happens later, from the stored row.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Protocol

from aiosmtpd.smtp import SMTP, Envelope, Session

from bot.clock import Clock
from bot.config import Config
from bot.errors import OperatorError, RecipientRefused, StoreUnavailable
from bot.intake.smtplimits import SESSION_EXPIRED, Admission, session_allowance
from storage.rawstore import Arrival, StoreResult

log = logging.getLogger("rootnotify.intake.smtp")

# Idle time before a silent client is dropped (RFC 5321 4.5.3.2 suggests
# minutes; a client that says nothing for this long holds a slot for nothing).
SMTP_TIMEOUT_SECONDS = 120


def accepts_recipient(bot_address: str, recipient: str) -> bool:
    """The intake address itself, or its `local+tag` sub-address (VERP bounces use it)."""
    local, _, domain = recipient.strip().strip("<>").lower().rpartition("@")
    bot_local, _, bot_domain = bot_address.lower().rpartition("@")
    if domain != bot_domain:
        return False
    return local == bot_local or local.startswith(bot_local + "+")


class DurableStore(Protocol):
    async def store(self, arrival: Arrival) -> StoreResult | None:
        """Durable when it returns; None when the database number is given later (spool)."""
        ...


class IntakeHandler:
    def __init__(
        self,
        config: Config,
        writer: DurableStore,
        clock: Clock,
        on_stored: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.writer = writer
        self.clock = clock
        self.on_stored = on_stored

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list
    ) -> str:
        peer = _peer(session)
        if not accepts_recipient(self.config.bot.address, address):
            log.info("%s refused recipient %s", peer, address)
            return RecipientRefused.smtp_reply
        if len(envelope.rcpt_tos) >= self.config.smtp.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        peer = _peer(session)
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        assert isinstance(raw, bytes)
        arrival = Arrival(
            raw=raw,
            channel="smtp",
            received_at=self.clock.now(),
            envelope_from=envelope.mail_from or "",
            envelope_to=tuple(envelope.rcpt_tos),
        )
        try:
            result = await self.writer.store(arrival)
        except Exception as exc:
            log.error("%s message not stored (%s); answered 451", peer, exc)
            return StoreUnavailable.smtp_reply
        if result is None:  # spooled: the worker imports it and gives it its number
            log.info("%s spooled %d bytes from <%s>", peer, len(raw), envelope.mail_from)
            self.on_stored()
            return "250 2.0.0 Queued"
        if result.duplicate:
            log.info("%s duplicate of stored message %d; accepted, not processed again",
                     peer, result.id)
        else:
            log.info("%s stored message %d (%d bytes) from <%s>", peer, result.id, len(raw),
                     envelope.mail_from)
            self.on_stored()
        return f"250 2.0.0 Stored as {result.id}"


def _peer(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"[{peer[0]}]:{peer[1]}"
    return str(peer)


class LimitedSMTP(SMTP):
    """aiosmtpd's SMTP with the admission rule and the session deadline of bot.intake.smtplimits."""

    def __init__(self, handler: IntakeHandler, admission: Admission, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(handler, **kwargs)
        self._admission = admission
        self._client: str | None = None  # set once admitted
        self._received = 0
        self._started = 0.0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._client is None:  # not again for the TLS transport after STARTTLS
            peer = transport.get_extra_info("peername")
            client = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
            refusal = self._admission.refusal(client)
            if refusal is not None:
                # Refuse politely (RFC 5321 3.8: 421 then close) rather than queue.
                log.info("[%s] refused: %s", client, refusal[4:].decode().strip())
                transport.write(refusal)  # type: ignore[attr-defined]
                transport.close()
                return
            self._admission.admit(client)
            self._client = client
            self._started = self.loop.time()
            self._deadline = self.loop.call_later(self._admission.config.session_timeout,
                                                  self._check_deadline)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._received += len(data)
        super().data_received(data)

    def _check_deadline(self) -> None:
        allowed = session_allowance(self._admission.config, self._received)
        left = self._started + allowed - self.loop.time()
        if left > 0:  # its data bought it more time
            self._deadline = self.loop.call_later(left, self._check_deadline)
            return
        log.info("[%s] session time limit: %d bytes in %.0f s", self._client, self._received,
                 allowed)
        if self.transport is not None:
            self.transport.write(SESSION_EXPIRED)  # type: ignore[attr-defined]
            self.transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._client is not None:
            self._admission.leave(self._client)
            self._client = None
            if self._deadline is not None:
                self._deadline.cancel()
        else:
            return  # refused before aiosmtpd saw it: nothing of its own to clean up
        super().connection_lost(error)


def tls_context(config: Config) -> ssl.SSLContext | None:
    cert, key = config.smtp.tls_certificate, config.smtp.tls_key
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key) if key else None)
    return context


def reserve_port(config: Config) -> socket.socket:
    """Bind the listener's address now, without listening yet; one line if it is taken.

    `serve` reserves its port before it starts anything else, so a second
    `serve` (or any program on the port) is refused at once, not after it has
    started a worker on the live database.
    """
    host, port = config.smtp.host, config.smtp.port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise OperatorError(f"[smtp] host {host!r}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        why = ("is already in use (is another rootnotify serve running?)"
               if exc.errno == errno.EADDRINUSE else f"cannot be opened: {exc.strerror}")
        raise OperatorError(f"[smtp] {host}:{port} {why}") from None
    return sock


async def start_smtp_server(
    config: Config, handler: IntakeHandler, loop: asyncio.AbstractEventLoop | None = None,
    sock: socket.socket | None = None,
) -> asyncio.AbstractServer:
    """Listen on the configured host and port (or `sock`, reserved before); the caller closes
    the returned server."""
    loop = loop or asyncio.get_running_loop()
    context = tls_context(config)

    admission = Admission(config.smtp)

    def factory() -> SMTP:
        return LimitedSMTP(
            handler,
            admission,
            data_size_limit=config.smtp.max_message_size,
            hostname=config.smtp.hostname,
            enable_SMTPUTF8=True,
            tls_context=context,
            timeout=SMTP_TIMEOUT_SECONDS,
            command_call_limit=config.smtp.command_call_limit,
            loop=loop,
        )

    if sock is not None:
        server = await loop.create_server(factory, sock=sock)
    else:
        server = await loop.create_server(factory, host=config.smtp.host, port=config.smtp.port)
    log.info("SMTP listening on %s:%d", config.smtp.host, config.smtp.port)
    return server
