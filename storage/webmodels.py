"""The staff web view's tables: sign-in links, sessions, sign-ins and rate-limit attempts.

Secrets are kept only as their SHA-256: a copy of the database signs no one in.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from storage.columns import _when


class WebSignInToken(SQLModel, table=True):
    """A one-time sign-in link mailed to a staff address: usable once, until it expires."""

    __tablename__ = "web_sign_in_token"

    token_sha256: str = Field(primary_key=True, max_length=64)
    address: str
    created_at: datetime = _when()
    expires_at: datetime = _when()
    used_at: datetime | None = _when(default=None, nullable=True)
    requested_from: str = ""  # the client address that asked for the link


class WebSession(SQLModel, table=True):
    """A signed-in browser: the cookie's value is known only to the browser."""

    __tablename__ = "web_session"

    id_sha256: str = Field(primary_key=True, max_length=64)
    address: str
    csrf: str  # the form token every POST of this session must carry
    created_at: datetime = _when()
    expires_at: datetime = _when()
    client: str = ""


class WebSignIn(SQLModel, table=True):
    """Every sign-in to the web view: who, when, from where; shown to staff."""

    __tablename__ = "web_sign_in"

    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(index=True)
    at: datetime = _when(index=True)
    client: str = ""
    user_agent: str = ""


class WebAttempt(SQLModel, table=True):
    """A sign-in request or token use, counted for the rate limits per address and client."""

    __tablename__ = "web_attempt"
    __table_args__ = (sa.Index("ix_web_attempt_scope_key_at", "scope", "key", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    scope: str  # what is limited: "address", "client"
    key: str
    at: datetime = _when()
