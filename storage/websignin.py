"""SQL of the web view's sign-in: one-time tokens, sessions, the sign-in record, attempts.

Tokens and session ids arrive here already hashed (bot/operator/web/auth.py hashes
them); nothing in these tables signs anyone in by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, delete, func, select, update

from storage.models import WebAttempt, WebSession, WebSignIn, WebSignInToken


def add_token(session: Session, token_sha256: str, address: str, now: datetime,
              expires_at: datetime, client: str) -> None:
    session.add(WebSignInToken(token_sha256=token_sha256, address=address, created_at=now,
                               expires_at=expires_at, requested_from=client))


def token_usable(session: Session, token_sha256: str, now: datetime) -> bool:
    """The token exists, is unused and has not expired (the GET's check; it uses nothing)."""
    row = session.get(WebSignInToken, token_sha256)
    return row is not None and row.used_at is None and row.expires_at > now


def use_token(session: Session, token_sha256: str, now: datetime) -> str | None:
    """Mark the token used and return its address; None when it is unknown, used or expired.

    One conditional UPDATE, so two requests racing with one token (two
    browsers, two web processes) cannot both get in.
    """
    table = WebSignInToken.__table__  # type: ignore[attr-defined]
    result = session.connection().execute(
        update(table).where(table.c.token_sha256 == token_sha256,
                            table.c.used_at.is_(None), table.c.expires_at > now)
        .values(used_at=now))
    if result.rowcount != 1:
        return None
    row = session.get(WebSignInToken, token_sha256)
    return row.address if row is not None else None


def add_session(session: Session, id_sha256: str, address: str, csrf: str, now: datetime,
                expires_at: datetime, client: str) -> None:
    session.add(WebSession(id_sha256=id_sha256, address=address, csrf=csrf, created_at=now,
                           expires_at=expires_at, client=client))


def live_session(session: Session, id_sha256: str, now: datetime) -> WebSession | None:
    row = session.get(WebSession, id_sha256)
    return row if row is not None and row.expires_at > now else None


def end_session(session: Session, id_sha256: str) -> None:
    row = session.get(WebSession, id_sha256)
    if row is not None:
        session.delete(row)


def record_sign_in(session: Session, address: str, now: datetime, client: str,
                   user_agent: str) -> None:
    session.add(WebSignIn(address=address, at=now, client=client, user_agent=user_agent))


def sign_ins(session: Session, limit: int) -> Sequence[WebSignIn]:
    return session.exec(select(WebSignIn).order_by(col(WebSignIn.at).desc(),
                                                   col(WebSignIn.id).desc()).limit(limit)).all()


def count_attempts(session: Session, scope: str, key: str, since: datetime) -> int:
    return session.exec(select(func.count()).select_from(WebAttempt).where(
        WebAttempt.scope == scope, WebAttempt.key == key, col(WebAttempt.at) > since)).one()


def add_attempt(session: Session, scope: str, key: str, now: datetime) -> None:
    session.add(WebAttempt(scope=scope, key=key, at=now))


def purge(session: Session, now: datetime, attempts_before: datetime) -> None:
    """Forget what can no longer matter: old attempts, expired links and sessions.

    The sign-in record (web_sign_in) is kept: it is the evidence staff read.
    """
    session.execute(delete(WebAttempt).where(col(WebAttempt.at) < attempts_before))
    session.execute(delete(WebSignInToken).where(col(WebSignInToken.expires_at) < now))
    session.execute(delete(WebSession).where(col(WebSession.expires_at) < now))
