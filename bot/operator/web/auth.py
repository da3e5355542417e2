"""Sign-in by a mailed one-time link: tokens, sessions, CSRF tokens and rate limits.

The link's GET only shows a "Sign in" button; the button's POST uses the
token (mail scanners fetch every link in a mail and must neither use it up
nor sign in). Tokens and session ids are random, mailed or set as a cookie,
and stored only as their SHA-256. Every time comes from the one clock.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from bot.compose.addressing import common
from bot.context import Context
from bot.outbox.enqueue import enqueue
from bot.outbox.render import MailSpec
from storage import websignin
from storage.models import WebSession

log = logging.getLogger("rootnotify.web.auth")

# A link is read within minutes of its mail, or not at all; short, so that
# a link forwarded or left in a mailbox soon signs no one in.
TOKEN_LIFETIME = timedelta(minutes=15)
# A working day at the desk; then the link again.
SESSION_LIFETIME = timedelta(hours=12)
# 256 bits: guessing one is out of reach whatever the rate limits allow.
SECRET_BYTES = 32
# What is limited, how many in how long. A staff member asks for a link a
# few times a day; a client asking for many more is guessing or flooding
# staff mailboxes. Token uses are limited per client too.
RATE_LIMITS: tuple[tuple[str, int, timedelta], ...] = (
    ("address", 5, timedelta(hours=1)),
    ("client", 20, timedelta(hours=1)),
)
TOKEN_USE_LIMIT = ("token-client", 20, timedelta(hours=1))
LONGEST_WINDOW = max(w for _s, _l, w in (*RATE_LIMITS, TOKEN_USE_LIMIT))
SIGN_IN_KIND = "sign-in"  # the outgoing mail's kind


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two secrets; an absent one never matches."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


def _limited(ctx: Context, checks: tuple[tuple[str, int, timedelta, str], ...]) -> bool:
    """Count one attempt for each (scope, limit, window, key); True if any is past its limit."""
    now = ctx.clock.now()
    with ctx.db.write() as session:
        over = any(websignin.count_attempts(session, scope, key, now - window) >= limit
                   for scope, limit, window, key in checks)
        for scope, _limit, _window, key in checks:
            websignin.add_attempt(session, scope, key, now)
        websignin.purge(session, now, now - LONGEST_WINDOW)
    return over


def request_link(ctx: Context, address: str, client: str) -> bool:
    """Mail a sign-in link when `address` is staff; False when the request was rate-limited.

    The answer is the same for a staff address and any other: the page must
    not tell a stranger which addresses are staff.
    """
    address = address.strip().lower()
    if _limited(ctx, tuple((scope, limit, window, address if scope == "address" else client)
                           for scope, limit, window in RATE_LIMITS)):
        log.warning("sign-in link for %s from %s refused: rate limit", address, client)
        return False
    if not ctx.config.is_staff(address):
        log.info("sign-in link asked for %s from %s: not a staff address", address, client)
        return True
    now = ctx.clock.now()
    token = new_secret()
    expires_at = now + TOKEN_LIFETIME
    subject, body = ctx.renderer.render(
        "sign-in-link.txt.j2", recipient=address, client=client, expires_at=expires_at,
        link=f"{ctx.config.web.base_url}/login/{token}", **common(ctx))
    with ctx.db.write() as session:
        websignin.add_token(session, digest(token), address, now, expires_at, client)
        enqueue(session, ctx, MailSpec(kind=SIGN_IN_KIND, to=[address], subject=subject,
                                       body=body, auto_submitted="auto-generated"))
    log.info("sign-in link for %s queued (asked from %s)", address, client)
    return True


def link_usable(ctx: Context, token: str) -> bool:
    with ctx.db.read() as session:
        return websignin.token_usable(session, digest(token), ctx.clock.now())


@dataclass(frozen=True)
class SignedIn:
    address: str
    session_id: str  # the cookie's value; only its digest is stored
    csrf: str


class TooManyAttempts(Exception):
    """This client used (or guessed) too many sign-in tokens lately."""


def sign_in(ctx: Context, token: str, client: str, user_agent: str) -> SignedIn | None:
    """Use the token once: a new session for its address, recorded; None if it is not valid."""
    scope, limit, window = TOKEN_USE_LIMIT
    if _limited(ctx, ((scope, limit, window, client),)):
        raise TooManyAttempts(client)
    now = ctx.clock.now()
    session_id, csrf = new_secret(), new_secret()
    with ctx.db.write() as session:
        address = websignin.use_token(session, digest(token), now)
        if address is None:
            log.warning("sign-in from %s with an unknown, used or expired link", client)
            return None
        websignin.add_session(session, digest(session_id), address, csrf, now,
                              now + SESSION_LIFETIME, client)
        websignin.record_sign_in(session, address, now, client, user_agent)
    log.info("%s signed in to the web view from %s", address, client)
    return SignedIn(address=address, session_id=session_id, csrf=csrf)


def session_for(ctx: Context, session_id: str | None) -> WebSession | None:
    if not session_id:
        return None
    with ctx.db.read() as session:
        return websignin.live_session(session, digest(session_id), ctx.clock.now())


def sign_out(ctx: Context, session_id: str) -> None:
    with ctx.db.write() as session:
        websignin.end_session(session, digest(session_id))
