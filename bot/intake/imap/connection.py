"""The IMAP connection: TLS or STARTTLS, login, and the one-line description of a failure.

`connect` sorts failures into the two kinds a caller acts on differently:
`ImapLoginRefused` (the credentials are wrong: a person must fix them; `serve`
refuses to start) and `ImapUnavailable` (no route, refused connection, TLS
failure, a server saying "[UNAVAILABLE]": it may heal, so retry with backoff).
`check_login` is what `serve` start and `rootnotify check-config` call.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import socket
import ssl
from dataclasses import dataclass

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import LoginError

from bot.config import ImapConfig
from bot.errors import ConfigError, RootnotifyError

log = logging.getLogger("rootnotify.intake.imap")

# A command the server does not answer within this long means a dead
# connection: the "fetch that silently hangs for hours" users complain of.
SOCKET_TIMEOUT_SECONDS = 60.0
# Connecting, the TLS handshake and the server's greeting: a server that is
# still starting (or a black hole) shows itself here, so it gets less time
# than a command on a working connection.
CONNECT_TIMEOUT_SECONDS = 10.0

class ImapUnavailable(RootnotifyError):
    """The server could not be reached, or refused TLS, or is failing: try again later."""


class ImapLoginRefused(ConfigError):
    """The server refused the configured user name and password: a person must fix them."""


@dataclass(frozen=True)
class LoginCheck:
    """What `check_login` found, for `check-config` to print."""

    server: str
    idle: bool
    move: bool
    folder_exists: bool
    messages: int


def peer_of(cfg: ImapConfig) -> str:
    return f"imap {cfg.username}@{cfg.host}:{cfg.port}"


def _tls_context(cfg: ImapConfig) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)


def connect(cfg: ImapConfig) -> IMAPClient:
    """A logged-in client: TLS on connect or STARTTLS, then LOGIN.

    Raises ImapLoginRefused when the server says no to the credentials, and
    ImapUnavailable for everything that may heal by itself (no route,
    refused connection, TLS failure, "[UNAVAILABLE]" from the server).
    """
    peer = peer_of(cfg)
    client: IMAPClient | None = None
    try:
        client = IMAPClient(cfg.host, port=cfg.port, ssl=cfg.ssl,
                            ssl_context=_tls_context(cfg) if cfg.ssl else None,
                            timeout=SocketTimeout(connect=CONNECT_TIMEOUT_SECONDS,
                                                  read=SOCKET_TIMEOUT_SECONDS))
        _quiet_unless_logged(client)
        if cfg.starttls and not cfg.ssl:
            client.starttls(_tls_context(cfg))
        client.normalise_times = False  # INTERNALDATE with its offset, not local naive time
        client.login(cfg.username, cfg.password or "")
        return client
    except LoginError as exc:
        _close(client)
        text = error_text(exc)
        if "[UNAVAILABLE]" in text.upper():
            raise ImapUnavailable(f"{peer}: server temporarily unavailable: {text}") from exc
        raise ImapLoginRefused(f"{peer}: login refused: {text} (check [imap] username and "
                               f"the password in ${cfg.password_env})") from exc
    except ssl.SSLError as exc:
        _close(client)
        raise ImapUnavailable(f"{peer}: TLS failed: {exc}") from exc
    except (OSError, imaplib.IMAP4.error) as exc:
        _close(client)
        raise ImapUnavailable(f"{peer}: {describe(exc)}") from exc


def _quiet_unless_logged(client: IMAPClient) -> None:
    """Let imaplib format its protocol trace only when someone logs it.

    imapclient turns imaplib's trace to its highest level and sends it to the
    "imapclient.imaplib" logger; imaplib builds each trace line before the
    logger can drop it, among them a repr of every fetched message and of each
    whole FETCH answer: measured on 2,000 messages of 2 KB fetched 50 at a
    time, 0.08 s of CPU with the trace against 0.05 s without. With that
    logger at DEBUG the trace is all there, as imapclient gives it.
    """
    if not logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
        client._imap.debug = 0


def has_unread_input(client: IMAPClient) -> bool:
    """Whether the server's bytes already wait in imaplib's read buffer (or TLS's).

    Polling the socket cannot see them, and that is how imapclient's
    `idle_check` waits. Dovecot answers IDLE with "+ idling" and, in the same
    packet, the EXISTS of mail that came since the last command; imaplib's
    buffered reader takes both while reading the continuation, so the news sat
    unseen until the next keep-alive, minutes later. Peeking with the socket
    non-blocking returns what is buffered without waiting for more.
    """
    sock = client.socket()
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return bool(client._imap.file.peek(1))
    except (ssl.SSLWantReadError, BlockingIOError):
        return False  # nothing buffered and nothing on the wire
    finally:
        sock.settimeout(timeout)


def check_login(cfg: ImapConfig) -> LoginCheck:
    """Connect, log in and look at the watched folder; for `serve` start and `check-config`."""
    client = connect(cfg)
    try:
        exists = client.folder_exists(cfg.folder)
        count = int(client.folder_status(cfg.folder, [b"MESSAGES"])[b"MESSAGES"]) if exists else 0
        return LoginCheck(server=f"{cfg.host}:{cfg.port}", idle=client.has_capability("IDLE"),
                          move=client.has_capability("MOVE"), folder_exists=exists,
                          messages=count)
    finally:
        logout(client)


def check_at_start(cfg: ImapConfig) -> None:
    """`serve` start: wrong credentials stop it; an unreachable server only warns.

    A mail server that is down for maintenance must not keep SMTP intake from
    starting; the poller keeps trying and alerts staff if it lasts.
    """
    try:
        found = check_login(cfg)
    except ImapUnavailable as exc:
        log.warning("%s; the poller keeps trying", exc)
        return
    if not found.folder_exists:
        log.warning("%s: folder %r does not exist (yet)", peer_of(cfg), cfg.folder)


def error_text(exc: BaseException) -> str:
    """The server's words in an imaplib error (bytes or str), as text."""
    text = exc.args[0] if exc.args else str(exc)
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


def describe(exc: BaseException) -> str:
    """One line for the log and `ImapState.last_error`."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return (f"no answer in time ({CONNECT_TIMEOUT_SECONDS:.0f} s to connect and greet, "
                f"{SOCKET_TIMEOUT_SECONDS:.0f} s a command)")
    if isinstance(exc, RootnotifyError):
        return str(exc)
    if isinstance(exc, imaplib.IMAP4.abort):
        return f"connection lost: {error_text(exc)}"
    return f"{type(exc).__name__}: {error_text(exc) or 'connection lost'}"


def _close(client: IMAPClient | None) -> None:
    if client is not None:
        with contextlib.suppress(Exception):  # already broken; nothing more to release
            client.shutdown()


def logout(client: IMAPClient | None) -> None:
    """Say goodbye if the connection still works, else just close it."""
    if client is None:
        return
    try:
        client.logout()
    except Exception:  # a dead connection cannot say goodbye
        _close(client)
