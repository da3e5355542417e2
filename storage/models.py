"""The data model: every table rootnotify keeps, as SQLModel classes.

Times are stored as UTC (naive in SQLite, aware in PostgreSQL) and always come
back timezone-aware, through `UTCDateTime`.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from storage.columns import UTCDateTime as UTCDateTime
from storage.columns import _when

# The web view's tables live in their own module; importing them here registers
# them with the metadata beside the others, and keeps them importable from here.
from storage.hostmodels import IncidentCounter as IncidentCounter
from storage.hostmodels import Node as Node
from storage.webmodels import WebAttempt as WebAttempt
from storage.webmodels import WebSession as WebSession
from storage.webmodels import WebSignIn as WebSignIn
from storage.webmodels import WebSignInToken as WebSignInToken

# Message states: stored → processed | failed (retried) → parked (a person must look);
# failed, parked or quarantined → dropped (a person ended it: kept, never retried).
STATE_STORED = "stored"
STATE_PROCESSED = "processed"
STATE_FAILED = "failed"
STATE_PARKED = "parked"
STATE_DROPPED = "dropped"

OUT_QUEUED = "queued"
OUT_SENT = "sent"
OUT_FAILED = "failed"

DL_OPEN = "open"
DL_SATISFIED = "satisfied"
DL_CANCELLED = "cancelled"


class Meta(SQLModel, table=True):
    """Small named values: schema version, last scheduler run, last mail per channel."""

    key: str = Field(primary_key=True)
    value: str


class InboundMessage(SQLModel, table=True):
    __tablename__ = "inbound_message"

    id: int | None = Field(default=None, primary_key=True)
    dedup_key: str = Field(unique=True, max_length=64)
    sha256: str = Field(max_length=64)
    message_id: str | None = Field(default=None, index=True)
    channel: str  # smtp | imap | file
    received_at: datetime = _when(index=True)
    envelope_from: str | None = None
    envelope_to: str = ""
    size: int = 0
    duplicates: int = 0

    state: str = Field(default=STATE_STORED, index=True)
    attempts: int = 0
    next_attempt_at: datetime | None = _when(default=None, nullable=True)
    last_error: str | None = None
    processed_at: datetime | None = _when(default=None, nullable=True)

    from_address: str | None = None
    subject: str | None = None
    date_header: datetime | None = _when(default=None, nullable=True)
    kind: str | None = None
    sender_role: str | None = None  # ca | staff | unknown | system
    ca: str | None = None
    incident_id: str | None = Field(default=None, foreign_key="incident.id", index=True)
    smime: str | None = None
    smime_reason: str | None = None
    quarantined: bool = Field(default=False, index=True)
    note: str | None = None


class RawMessage(SQLModel, table=True):
    """The bytes as received, kept forever."""

    __tablename__ = "raw_message"

    id: int = Field(foreign_key="inbound_message.id", primary_key=True)
    data: bytes = Field(sa_type=sa.LargeBinary)


class Incident(SQLModel, table=True):
    # ix_incident_r3: the R3 job looks only at incidents whose report mode is
    # still undecided, so its cost follows new incidents, not the history.
    # ix_incident_form: the duplicate check (bot/decide/handlers/duplicates.py) looks up
    # one CA's incidents opened by the same form, so its cost is one probe.
    __table_args__ = (sa.UniqueConstraint("year", "seq"),
                      sa.Index("ix_incident_r3", "reports_mode", "notified_at"),
                      sa.Index("ix_incident_form", "ca", "form_digest"))

    id: str = Field(primary_key=True)
    year: int
    seq: int
    ca: str = Field(index=True)
    status: str = Field(default="open", index=True)
    category: str = "other"
    ruleset: str
    incident_at: datetime | None = _when(default=None, nullable=True)
    discovered_at: datetime | None = _when(default=None, nullable=True)
    notified_at: datetime = _when()
    notification_deadline: datetime | None = _when(default=None, nullable=True)
    notified_on_time: bool | None = None
    late_by_seconds: int | None = None
    exceptional: bool = False
    # as-discovered | every (staff set it) | daily-update (2026-02 default) | None (undecided)
    reports_mode: str | None = None
    report_interval_seconds: int | None = None
    form_source: str | None = None
    thread_message_id: str | None = None
    public_disclosure: str | None = None
    created_at: datetime = _when()
    closed_at: datetime | None = _when(default=None, nullable=True)
    # When staff said the incident is remediated (/resolved, R3/R4 of 2026-02).
    resolved_at: datetime | None = _when(default=None, nullable=True)
    # SHA-256 of the answers of the form that opened it (bot/decide/handlers/duplicates.py):
    # the same form again within a day is that notification re-sent.
    form_digest: str | None = Field(default=None, max_length=64)
    # The incident a staff `/merge` moved this one into; it is closed then.
    merged_into: str | None = Field(default=None, foreign_key="incident.id")


class FormValue(SQLModel, table=True):
    """One answer to one form question; earlier answers stay (R4 item 3 asks about changes)."""

    __tablename__ = "form_value"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(foreign_key="incident.id", index=True)
    key: str
    value: str
    at_value: datetime | None = _when(default=None, nullable=True)
    note: str | None = None
    inbound_id: int | None = Field(default=None, foreign_key="inbound_message.id")
    recorded_at: datetime = _when()
    current: bool = True


class Event(SQLModel, table=True):
    """One entry of an incident's timeline, with its cause."""

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str | None = Field(default=None, foreign_key="incident.id", index=True)
    at: datetime = _when(index=True)
    kind: str
    summary: str
    rule: str | None = None
    inbound_id: int | None = Field(default=None, foreign_key="inbound_message.id")
    outbound_id: int | None = Field(default=None, foreign_key="outbound_message.id")
    command: str | None = None
    data: str | None = None  # JSON details


class Deadline(SQLModel, table=True):
    # ix_deadline_due serves the reminder pass; ix_deadline_state_due the digest's
    # "overdue" and "due within a week" lists: both cost what they list.
    __table_args__ = (sa.Index("ix_deadline_due", "state", "next_reminder_at"),
                      sa.Index("ix_deadline_state_due", "state", "due_at"))

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(foreign_key="incident.id", index=True)
    kind: str
    # None: requested without a due date (an undated request, R2/R5): tracked,
    # never reminded (DESIGN: every due date derives from a mail's receipt time).
    due_at: datetime | None = _when(default=None, nullable=True)
    state: str = DL_OPEN
    rule: str
    text: str | None = None
    interval_seconds: int | None = None
    created_at: datetime = _when()
    requested_by: str | None = None
    satisfied_at: datetime | None = _when(default=None, nullable=True)
    satisfied_by: int | None = Field(default=None, foreign_key="inbound_message.id")
    next_reminder_at: datetime | None = _when(default=None, nullable=True)
    reminders_sent: int = 0


class ReminderLog(SQLModel, table=True):
    """One row per reminder stage sent; the unique key makes reminders idempotent."""

    __tablename__ = "reminder_log"
    __table_args__ = (sa.UniqueConstraint("deadline_id", "stage"),)

    id: int | None = Field(default=None, primary_key=True)
    deadline_id: int = Field(foreign_key="deadline.id")
    stage: str
    sent_at: datetime = _when()


def comma_list(field: str | None) -> list[str]:
    """The items of a comma-separated column (recipients, report keys …), in order."""
    return [item for item in (field or "").split(",") if item]


class OutboundMessage(SQLModel, table=True):
    """The transactional outbox: rendered mail, delivered later at least once."""

    __tablename__ = "outbound_message"
    __table_args__ = (sa.Index("ix_outbound_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(unique=True)
    incident_id: str | None = Field(default=None, foreign_key="incident.id", index=True)
    kind: str
    envelope_from: str
    recipients: str  # comma-separated addr-specs
    subject: str
    data: bytes = Field(sa_type=sa.LargeBinary)
    status: str = OUT_QUEUED
    # Those of `recipients` it could not reach for good (refused by the relay
    # with 5xx, or bounced), comma-separated; when that includes every To
    # recipient the status is failed (bot/outbox/verdict.py), else sent.
    failed_recipients: str | None = None
    # Those of `recipients` the relay deferred (4xx) while others took it: the
    # next attempt goes to them alone (RFC 5321 4.5.4.1), not again to all.
    retry_recipients: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = _when(default=None, nullable=True)
    last_error: str | None = None
    created_at: datetime = _when()
    sent_at: datetime | None = _when(default=None, nullable=True)
    inbound_id: int | None = Field(default=None, foreign_key="inbound_message.id")
    # The sender delivering it now (bot/outbox/owner.py) and until when its
    # claim holds: another host takes the mail over only after `lease_until`,
    # and a sender records an outcome only while `claimed_by` is still its own.
    claimed_by: str | None = None
    lease_until: datetime | None = _when(default=None, nullable=True)


class Certificate(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("incident_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(foreign_key="incident.id", index=True)
    key: str  # sha256, else "serial:<issuer>:<serial>", else "crtsh:<id>"
    sha256: str | None = None
    serial: str | None = None
    issuer: str | None = None
    subject: str | None = None
    dns_names: str = ""  # newline-separated
    not_before: datetime | None = _when(default=None, nullable=True)
    not_after: datetime | None = _when(default=None, nullable=True)
    precertificate: bool = False
    # crt.sh ids passed 2**31 long ago: 64 bits (SQLite's INTEGER is; PostgreSQL's is not).
    crtsh_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    inbound_id: int | None = Field(default=None, foreign_key="inbound_message.id")


class Domain(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("incident_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(foreign_key="incident.id", index=True)
    name: str


class CertificateListLoad(SQLModel, table=True):
    """How far one attached list of one message has been stored, committed with each chunk.

    A big list is stored in its own short transactions before the message is
    acted on; this row carries the counts across them (and across a retry
    after a crash), so the receipt's new-versus-repeated numbers stay right.
    """

    __tablename__ = "certificate_list_load"

    inbound_id: int = Field(foreign_key="inbound_message.id", primary_key=True)
    position: int = Field(primary_key=True)  # the list's place among the mail's lists
    incident_id: str = Field(foreign_key="incident.id")
    source: str = ""
    rows: int = 0  # read in the latest pass over the list
    rejected: int = 0
    new_certificates: int = 0  # inserted by this message, summed over every pass
    new_domains: int = 0
    limit: str | None = None
    first_rejections: str = "[]"  # JSON
    seconds: float = 0.0
    chunks: int = 0  # write transactions in the latest pass
    longest_chunk: float = 0.0  # seconds the longest of them held the write lock
    complete: bool = False


class Notice(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(foreign_key="incident.id", index=True)
    action: str
    target: str
    target_sha256: str | None = None
    effective_at: datetime = _when()
    exceptional: bool = False
    sent_at: datetime = _when()
    message_id: str
    recipients: str = ""
    outbound_id: int | None = Field(default=None, foreign_key="outbound_message.id")


class Proposal(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(foreign_key="incident.id", index=True)
    inbound_id: int = Field(foreign_key="inbound_message.id")
    received_at: datetime = _when()
    state: str = Field(default="open", index=True)  # open | answered
    summary: str = ""


class FinalReport(SQLModel, table=True):
    __tablename__ = "final_report"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(foreign_key="incident.id", index=True)
    inbound_id: int = Field(foreign_key="inbound_message.id")
    received_at: datetime = _when()
    present: str = ""  # comma-separated item keys
    missing: str = ""


class ImapState(SQLModel, table=True):
    __tablename__ = "imap_state"

    folder: str = Field(primary_key=True)
    # RFC 3501 nz-numbers: unsigned 32 bits, past a signed 32-bit INTEGER.
    uidvalidity: int | None = Field(default=None, sa_type=sa.BigInteger)
    last_uid: int = Field(default=0, sa_type=sa.BigInteger)
    last_poll_at: datetime | None = _when(default=None, nullable=True)
    last_success_at: datetime | None = _when(default=None, nullable=True)
    last_error: str | None = None


class AutoReplyCount(SQLModel, table=True):
    """Automatic replies sent per address per day, for the per-sender cap."""

    __tablename__ = "auto_reply_count"

    address: str = Field(primary_key=True)
    day: str = Field(primary_key=True)
    count: int = 0


class SignatureUse(SQLModel, table=True):
    """A signature that authenticated a command, once: a second mail carrying it is a replay."""

    __tablename__ = "signature_use"

    # SHA-256 (hex) of the CMS SignatureValue, or of a DKIM b= value.
    digest: str = Field(primary_key=True, max_length=64)
    method: str  # smime | dkim
    inbound_id: int = Field(foreign_key="inbound_message.id")
    incident_id: str | None = Field(default=None, foreign_key="incident.id")
    signer: str = ""
    used_at: datetime = _when()
