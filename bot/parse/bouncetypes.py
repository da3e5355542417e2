"""The typed result of reading a bounce, and the limits every bounce reader keeps to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Only the head of a bounce is parsed. The report parts come before the
# returned original, which may be the whole 25 MB mail we sent.
MAX_BOUNCE_BYTES = 512 * 1024


# MIME parts visited; a real report has fewer than 20 (Exchange: ~10).
MAX_PARTS = 100


# A DSN about one of our mails names at most the recipients we sent it to.
MAX_RECIPIENTS = 100


# Human-readable text scanned by the text-bounce readers, all parts together.
MAX_TEXT_CHARS = 64 * 1024


# Lines read after a "these addresses failed" line before giving up.
MAX_LINES_AFTER_INTRO = 200


# Lines of detail kept per recipient of a text bounce.
MAX_DETAIL_LINES = 12


# A diagnostic is one line for staff, not the remote server's essay.
MAX_DIAGNOSTIC_CHARS = 200


# RFC 5321 4.5.3.1: path 256 octets with the angle brackets, local part 64, domain 255.
MAX_ADDRESS_CHARS = 254
MAX_LOCAL_PART_CHARS = 64
MAX_DOMAIN_CHARS = 253


# RFC 5322 3.6.4 allows longer; a longer one in a bounce is not ours.
MAX_MESSAGE_ID_CHARS = 250


# VERP tokens are our own outbox ids; a short alphabet survives every MTA.
MAX_VERP_TOKEN_CHARS = 64
Kind = Literal["failed", "delayed", "delivered", "relayed", "expanded", "disposition"]
_ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})


@dataclass(frozen=True)
class BouncedRecipient:
    """One recipient of a report.

    `action`: failed, delayed, delivered, relayed, expanded (RFC 3464 2.3.3), or
    for a read receipt its disposition type (displayed, deleted, …).
    `status`: RFC 3463 code "5.1.1"; when the report gives none it is taken from
    the diagnostic (an enhanced code there, or "5.0.0" for a bare 550), else None.
    """

    address: str
    action: str
    status: str | None
    diagnostic: str | None
    original_address: str | None = None  # Original-Recipient: what the sender wrote

    @property
    def permanent(self) -> bool:
        """The address itself was refused: status 5.x.x (no status: action failed)."""
        if self.status:
            return self.status.startswith("5")
        return self.action == "failed"

    @property
    def temporary(self) -> bool:
        """A transient condition: status 4.x.x (no status: action delayed).

        A report may say `failed` with a 4.x.x status (the MTA gave up on a
        transient error, e.g. Gmail on NXDOMAIN): the mail is lost, but the
        address may work next time.
        """
        if self.status:
            return self.status.startswith("4")
        return self.action == "delayed"


@dataclass(frozen=True)
class BounceReport:
    kind: Kind
    recipients: tuple[BouncedRecipient, ...]
    original_message_id: str | None
    verp_token: str | None
    reason: str
    source: str = "rfc3464"  # which reader found the recipients: rfc3464, rfc8098, exim-text, …

    @property
    def permanent(self) -> bool:
        """The mail will not arrive: some recipient failed (or a text bounce named none)."""
        if self.kind != "failed":
            return False
        return not self.recipients or any(r.action == "failed" for r in self.recipients)
