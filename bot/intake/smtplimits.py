"""Who may open an SMTP session, and for how long: limits so one client cannot hold the listener.

aiosmtpd has no per-client limit, and its idle timeout is reset by every
command, so one address trickling a byte every few seconds over a hundred
connections kept every other client out (`421 Too many connections`). The
admission rule, in order (Postfix: `smtpd_client_connection_count_limit`,
anvil; `smtpd_timeout` with `smtpd_min_data_rate`):

    full            no slot at all (`max_connections`)
    per client      the address holds `max_connections_per_client` sessions
    reserved        the address holds a session already, and only the
                    `reserved_percent` share of slots is left: kept for
                    clients with none
    (the last two not for `unlimited_clients`: the program's own MX)

and every admitted session has a deadline as a whole: `session_timeout`
seconds plus the time its bytes take at `min_data_rate` bytes/s. A client
sending mail at any real speed never meets it; a trickling one is answered
`421` and closed, and nothing it sent was accepted (no `250`), so nothing is
lost.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bot.config import SmtpConfig

REFUSED_FULL = b"421 4.7.0 Too many connections, try again later\r\n"
REFUSED_CLIENT = b"421 4.7.0 Too many connections from your address, try again later\r\n"
REFUSED_RESERVED = (b"421 4.7.0 The remaining connections are kept for other clients, "
                    b"try again later\r\n")
SESSION_EXPIRED = b"421 4.4.2 Session time limit exceeded, closing connection\r\n"


@dataclass
class Admission:
    """The listener's count of open sessions, in total and per client address."""

    config: SmtpConfig
    total: int = 0
    per_client: Counter[str] = field(default_factory=Counter)

    def refusal(self, address: str) -> bytes | None:
        """The reply refusing a new session from `address`, or None to admit it."""
        limit = self.config.max_connections
        held = self.per_client[address]
        if self.total >= limit:
            return REFUSED_FULL
        if address in self.config.unlimited_clients:
            return None
        if held >= self.config.max_connections_per_client:
            return REFUSED_CLIENT
        if held and limit - self.total <= self.config.reserved_connections:
            return REFUSED_RESERVED
        return None

    def admit(self, address: str) -> None:
        self.total += 1
        self.per_client[address] += 1

    def leave(self, address: str) -> None:
        self.total -= 1
        self.per_client[address] -= 1
        if self.per_client[address] <= 0:
            del self.per_client[address]


def session_allowance(config: SmtpConfig, received: int) -> float:
    """Seconds a session that has sent `received` bytes may last in all."""
    return config.session_timeout + received / config.min_data_rate
