"""Deliver queued mail: claim due rows, hand them to the relay (or a maildir), mark them.

At least once: a row is claimed by pushing its next attempt into the future
(a lease, held by `lease_owner()`) in one short transaction, sent outside any
transaction, then marked sent. A sender that dies mid-delivery, or after
sending and before marking, leaves the mail to whoever claims it once the
lease has run out (another host on the same PostgreSQL, or itself restarted),
sent with the same Message-ID, fixed when it was queued, so the recipient can
discard a second copy. Two senders (`serve` and `tick`, or two hosts) never
claim the same row at once, and one records an outcome only for a row whose
claim is still its own.
"""

from __future__ import annotations

import contextlib
import logging
import mailbox
import smtplib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import insert, update
from sqlmodel import Session, col, select

from bot.config import Config
from bot.context import Context
from bot.errors import PermanentDeliveryError, TemporaryDeliveryError
from bot.logs import note_events
from bot.outbox.owner import lease_owner
from bot.outbox.verdict import mail_status
from storage.models import (
    OUT_FAILED,
    OUT_QUEUED,
    OUT_SENT,
    Event,
    OutboundMessage,
    comma_list,
)

log = logging.getLogger("rootnotify.outbox.sender")

RELAY_TIMEOUT_SECONDS = 60
# A claimed mail is not claimed again for this long: a little over smtplib's
# timeout, so that a host that died mid-delivery has its mail sent by another
# within a minute and a half. A mail is only handed to the relay while at
# least RELAY_TIMEOUT_SECONDS of its lease are left (a slow relay leaves the
# rest of a batch to the next claim instead of racing another host's).
CLAIM_LEASE = timedelta(seconds=RELAY_TIMEOUT_SECONDS + 30)
# Backoff after a temporary failure: 1 min, doubling, at most 1 h; after
# MAX_ATTEMPTS (about two days of trying) the mail is failed and staff told.
FIRST_RETRY = timedelta(minutes=1)
MAX_RETRY = timedelta(hours=1)
MAX_ATTEMPTS = 60
# Mails claimed, sent and then recorded together. Each claim and each record
# waits for the write lock behind one pipeline transaction; with 10 a mail the
# outbox fell behind a busy pipeline (bench/intake.py: acknowledgements bunched
# at the end of a burst). A crash resends at most this many after the lease,
# with their Message-IDs unchanged.
BATCH = 50


# Recipients the relay refused while others took the mail: address → (code, text).
Refused = dict[str, tuple[int, str]]


class Transport(Protocol):
    def send(self, envelope_from: str, recipients: list[str], data: bytes) -> Refused | None:
        """Deliver, saying which recipients were refused if some were; raise
        TemporaryDeliveryError / PermanentDeliveryError if none took it, all
        deferred or all refused for good (a mix is returned, one by one)."""
        ...


class SmtpRelay:
    """The configured relay, one SMTP session reused for the mails of one delivery pass."""

    def __init__(self, config: Config) -> None:
        self.out = config.outgoing
        self.local_hostname = config.smtp.hostname
        self._smtp: smtplib.SMTP | None = None

    def _session(self) -> smtplib.SMTP:
        if self._smtp is None:
            smtp = smtplib.SMTP(self.out.host, self.out.port, local_hostname=self.local_hostname,
                                timeout=RELAY_TIMEOUT_SECONDS)
            try:
                if self.out.starttls:
                    smtp.starttls()
                if self.out.username:
                    smtp.login(self.out.username, self.out.password or "")
            except BaseException:
                smtp.close()
                raise
            self._smtp = smtp
        return self._smtp

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._smtp.quit()
            self._smtp.close()
            self._smtp = None

    def send(self, envelope_from: str, recipients: list[str], data: bytes) -> Refused:
        try:
            try:
                refused = self._session().sendmail(envelope_from, recipients, data)
            except smtplib.SMTPServerDisconnected:
                # The relay closed an idle reused session: one fresh attempt.
                self.close()
                refused = self._session().sendmail(envelope_from, recipients, data)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(f"{r}: {c} {m!r}" for r, (c, m) in exc.recipients.items())
            if all(500 <= c < 600 for c in codes):
                raise PermanentDeliveryError(f"all recipients refused: {detail}") from exc
            if all(not 500 <= c < 600 for c in codes):
                raise TemporaryDeliveryError(f"recipients refused: {detail}") from exc
            # Some refused for good, some deferred: each is judged alone, so the
            # refused one is failed now, not retried for two days with the others.
            refused = exc.recipients
        except smtplib.SMTPResponseException as exc:
            text = f"{exc.smtp_code} {exc.smtp_error!r}"
            if 500 <= exc.smtp_code < 600:
                raise PermanentDeliveryError(text) from exc
            raise TemporaryDeliveryError(text) from exc
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise TemporaryDeliveryError(f"relay {self.out.host}:{self.out.port}: {exc}") from exc
        # Some recipients took it (or none did, but not all for the same
        # reason); the others are the caller's to record (and, if deferred, to
        # retry alone, so that those who have it get it once).
        return {address: (code, text.decode(errors="replace")
                          if isinstance(text, bytes) else str(text))
                for address, (code, text) in refused.items()}


class MaildirDrop:
    """Demo mode: every outgoing mail lands in data_dir/outbox as a maildir message."""

    def __init__(self, folder: Path) -> None:
        # data_dir itself may not exist yet: a SQLite database beside it makes
        # it, a PostgreSQL one does not (Maildir creates only its own folder).
        folder.parent.mkdir(parents=True, exist_ok=True)
        self.box = mailbox.Maildir(folder, create=True)

    def send(self, envelope_from: str, recipients: list[str], data: bytes) -> Refused:
        header = (f"Return-Path: <{envelope_from}>\r\n"
                  f"X-Rootnotify-Envelope-To: {', '.join(recipients)}\r\n").encode()
        self.box.add(header + data)
        return {}


def transport_for(config: Config) -> Transport:
    if config.outgoing.mode == "maildir":
        return MaildirDrop(config.bot.data_dir / "outbox")
    return SmtpRelay(config)


@dataclass
class Outcome:
    """What one attempt at one mail came to, before it is recorded."""

    row: OutboundMessage
    status: str  # OUT_SENT, OUT_QUEUED (retry) or OUT_FAILED
    error: str | None = None
    refused: Refused | None = None  # sent, but not to these

    @property
    def plain(self) -> bool:
        """Sent to every recipient on its first try: recorded in bulk."""
        return self.status == OUT_SENT and not self.refused and not self.row.retry_recipients


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0


def _backoff(attempts: int) -> timedelta:
    return min(FIRST_RETRY * (2 ** max(attempts - 1, 0)), MAX_RETRY)


def _claim(session: Session, ctx: Context, limit: int) -> list[int]:
    """Push the due mails' next attempt past the lease, in one statement; their ids.

    One UPDATE ... RETURNING on the connection: the claim is what other
    writers wait for (the pipeline takes turns with it at the lock), so it
    neither loads the mails' bytes nor goes through the ORM. On PostgreSQL
    another host may claim at the same moment: the due rows are locked with
    SKIP LOCKED, so each takes rows the other has not (without it both
    UPDATEs took the same rows, the second after waiting for the first). On
    SQLite the write lock already lets one claimer in at a time.
    """
    now = ctx.clock.now()
    lease_end = now + CLAIM_LEASE
    table = OutboundMessage.__table__
    due = (select(table.c.id)
           .where(table.c.status == OUT_QUEUED, table.c.next_attempt_at <= now)
           .order_by(table.c.next_attempt_at, table.c.id)
           .limit(limit))
    if session.connection().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    claimed = session.connection().execute(
        update(table).where(table.c.id.in_(due.scalar_subquery()))
        .values(attempts=table.c.attempts + 1, next_attempt_at=lease_end,
                claimed_by=lease_owner(), lease_until=lease_end)
        .returning(table.c.id))
    return [row_id for (row_id,) in claimed]


def _load(ctx: Context, ids: list[int]) -> list[OutboundMessage]:
    """The claimed mails, read outside the write lock, oldest first."""
    if not ids:
        return []
    with ctx.db.read() as session:
        return list(session.exec(select(OutboundMessage)
                                 .where(col(OutboundMessage.id).in_(ids))
                                 .order_by(col(OutboundMessage.id))))


def deliver_due(ctx: Context, transport: Transport) -> DeliveryReport:
    """Send everything due over one relay session; record outcomes a batch at a time.

    Each write transaction records what the last batch came to and claims the
    next batch: one turn at the lock per batch instead of two.
    """
    report = DeliveryReport()
    outcomes: list[Outcome] = []
    try:
        # Claim batch after batch until nothing is due: waiting for the next
        # pass after each batch left a backlog of acknowledgements queued for
        # tens of seconds in bench/intake.py.
        while True:
            with ctx.db.write() as session:
                _record(session, ctx, outcomes, report)
                outcomes = []
                claimed = _claim(session, ctx, BATCH)
            rows = _load(ctx, claimed)
            if not rows:
                break
            _send_all(ctx, transport, rows, outcomes)
    finally:
        close = getattr(transport, "close", None)
        if close is not None:
            close()
        if outcomes:
            with ctx.db.write() as session:
                _record(session, ctx, outcomes, report)
    return report


def _send_all(ctx: Context, transport: Transport, rows: list[OutboundMessage],
              outcomes: list[Outcome]) -> None:
    for row in rows:
        if not _lease_left(ctx, row):
            # Another host may claim it before this send would end: it is
            # theirs (or ours again) at the next claim, not sent twice now.
            log.warning("%s not sent: its lease runs out within the relay's timeout",
                        row.message_id)
            continue
        try:
            refused = transport.send(row.envelope_from, _attempted(row), row.data)
        except PermanentDeliveryError as exc:
            outcomes.append(Outcome(row, OUT_FAILED, str(exc)))
        except TemporaryDeliveryError as exc:
            if row.attempts >= MAX_ATTEMPTS:
                outcomes.append(Outcome(row, OUT_FAILED,
                                        f"gave up after {row.attempts} attempts: {exc}"))
            else:
                outcomes.append(Outcome(row, OUT_QUEUED, str(exc)))
        else:
            outcomes.append(Outcome(row, OUT_SENT, refused=refused or None))


def _lease_left(ctx: Context, row: OutboundMessage) -> bool:
    """Whether this sender's claim on `row` lasts through one relay transaction."""
    from bot.clock import as_utc

    if row.lease_until is None:
        return False
    return as_utc(row.lease_until) - ctx.clock.now() >= timedelta(seconds=RELAY_TIMEOUT_SECONDS)


def _attempted(row: OutboundMessage) -> list[str]:
    """Who this attempt is for: those the relay deferred last time, else everyone."""
    return comma_list(row.retry_recipients) or comma_list(row.recipients)


def _record(session: Session, ctx: Context, outcomes: list[Outcome],
            report: DeliveryReport) -> None:
    if not outcomes:
        return
    report.sent += _mark_sent(session, ctx, [o.row for o in outcomes if o.plain])
    others = [o for o in outcomes if not o.plain]
    if not others:
        return
    # Locked (on PostgreSQL) from this check to the commit: a host that has
    # taken a mail over since its lease ran out owns its outcome, not this one.
    current = {row.id: row for row in session.exec(select(OutboundMessage).where(
        col(OutboundMessage.id).in_([o.row.id for o in others]),
        col(OutboundMessage.claimed_by) == lease_owner()).with_for_update())}
    for outcome in others:
        fresh = current.get(outcome.row.id)
        if fresh is None:
            _lost(outcome.row)
            continue
        fresh.claimed_by = None
        fresh.lease_until = None
        if outcome.status == OUT_FAILED:
            mark_failed(session, ctx, fresh, outcome.error or "", _attempted(outcome.row))
            report.failed += 1
        elif outcome.status == OUT_SENT:
            if _mark_delivered(session, ctx, fresh, _attempted(outcome.row),
                               outcome.refused or {}):
                report.sent += 1
            else:  # no one took it: one refused for good, the others deferred
                report.retried += 1
        else:
            _mark_retry(session, ctx, fresh, outcome.error or "")
            report.retried += 1
    # What the claim below reads must see these rows as they are now.
    session.flush()


def _mark_sent(session: Session, ctx: Context, rows: list[OutboundMessage]) -> int:
    """Mark `rows` sent, with a timeline event each, in two statements; how many were marked.

    The claim and this record are what the pipeline waits for at the lock: in
    bulk on the connection they take a fraction of what an ORM update and an
    Event object per mail took. A mail a bounce has failed meanwhile (it can
    come back before this mark) stays failed.
    """
    if not rows:
        return 0
    now = ctx.clock.now()
    table = OutboundMessage.__table__
    connection = session.connection()
    marked = connection.execute(
        update(table)
        .where(table.c.id.in_([row.id for row in rows]), table.c.status != OUT_FAILED,
               table.c.claimed_by == lease_owner())
        .values(status=OUT_SENT, sent_at=now, last_error=None, claimed_by=None,
                lease_until=None)
        .returning(table.c.id, table.c.incident_id, table.c.kind, table.c.message_id,
                   table.c.recipients)).all()
    mine = {row_id for row_id, *_ in marked}
    for row in rows:
        if row.id not in mine:
            _lost(row)
    events = [{"incident_id": incident_id, "at": now, "kind": f"mail-sent:{kind}",
               "summary": f"{kind} {message_id} sent to {recipients}", "outbound_id": row_id,
               "rule": None, "inbound_id": None, "command": None, "data": None}
              for row_id, incident_id, kind, message_id, recipients in marked if incident_id]
    if events:
        connection.execute(insert(Event.__table__), events)
        note_events(session, events)
    for row_id, incident_id, kind, message_id, recipients in marked:
        log.info("sent %s %s for %s to %s", kind, message_id, incident_id or "-", recipients,
                 extra={"incident": incident_id, "outbound": row_id, "message_id": message_id})
    return len(marked)


def _lost(row: OutboundMessage) -> None:
    log.warning("outcome of %s not recorded: another sender holds its claim now (or a bounce "
                "failed it meanwhile)", row.message_id,
                extra={"outbound": row.id, "message_id": row.message_id})


def _mark_retry(session: Session, ctx: Context, row: OutboundMessage, error: str) -> None:
    row.last_error = error[:1000]
    row.next_attempt_at = ctx.clock.now() + _backoff(row.attempts)
    session.add(row)
    log.warning("delivery of %s deferred (attempt %d): %s", row.message_id, row.attempts, error)


def _mark_delivered(session: Session, ctx: Context, row: OutboundMessage,
                    attempted: list[str], refused: Refused) -> bool:
    """`attempted` took the mail but for `refused`: those who have it are not sent it
    again; a deferred one (4xx) is retried alone, a refused one (5xx) is failed.
    True when someone took it."""
    now = ctx.clock.now()
    delivered = [a for a in attempted if a not in refused]
    deferred = {a: r for a, r in refused.items() if not 500 <= r[0] < 600}
    if deferred and row.attempts >= MAX_ATTEMPTS:
        deferred = {}  # given up: failed below like a 5xx
    failed = {a: r for a, r in refused.items() if a not in deferred}
    row.retry_recipients = ",".join(deferred) or None
    # A To that failed earlier (refused, or bounced) keeps the mail failed
    # once these retries are done: mail_status judges it from every recipient.
    row.status = mail_status(row)
    if delivered:
        row.sent_at = now
        if row.incident_id:
            session.add(Event(incident_id=row.incident_id, at=now,
                              kind=f"mail-sent:{row.kind}", outbound_id=row.id,
                              summary=f"{row.kind} {row.message_id} sent to "
                                      f"{','.join(delivered)}"))
        log.info("sent %s %s for %s to %s", row.kind, row.message_id, row.incident_id or "-",
                 ",".join(delivered), extra={"incident": row.incident_id, "outbound": row.id,
                                             "message_id": row.message_id})
    if deferred:
        row.next_attempt_at = now + _backoff(row.attempts)
        row.last_error = _refusals("deferred", deferred)[:1000]
        log.warning("delivery of %s to %s deferred (attempt %d): %s", row.message_id,
                    ",".join(deferred), row.attempts, row.last_error)
    if failed:
        mark_failed(session, ctx, row, _refusals("refused", failed), list(failed))
    else:
        session.add(row)
    return bool(delivered)


def _refusals(what: str, refused: Refused) -> str:
    return "; ".join(f"{what} for {address}: {code} {text}"
                     for address, (code, text) in refused.items())


def mark_failed(session: Session, ctx: Context, row: OutboundMessage, error: str,
                 failed_for: list[str]) -> None:
    """`row` will never reach `failed_for`; its status then follows bot.outbox.verdict."""
    from bot.compose.alerts import delivery_failed

    failed = [a for a in comma_list(row.recipients)
              if a in {*comma_list(row.failed_recipients), *failed_for}]
    row.failed_recipients = ",".join(failed) or None
    row.retry_recipients = ",".join(
        a for a in comma_list(row.retry_recipients) if a not in failed) or None
    row.status = mail_status(row)
    row.last_error = error[:1000]
    session.add(row)
    delivery_failed(session, ctx, row, error, failed_for)
    log.error("delivery of %s to %s failed for good: %s", row.message_id,
              ",".join(failed_for), error)
