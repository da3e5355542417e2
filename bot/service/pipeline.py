"""Claims stored messages and runs parse → decide on each, one transaction per message.

Three stages per batch: analysis outside any transaction; bulk storing (a
certificate list's rows) in short transactions of its own; then one write
transaction that acts on every message of the batch, a savepoint each.

A message that fails stays stored with its error and a retry count; it is
retried with backoff and parked for a person after MAX_ATTEMPTS. Nothing is
dropped: `rootnotify reprocess` puts failed and parked messages back.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import col, or_, select

from bot.context import Context
from bot.decide.handlers.certificates import store_lists_before_acting
from bot.decide.route import act
from bot.errors import AnalysisAborted, PermanentProcessingError
from bot.parse.mail.message import without_nul
from bot.service.analysis import Analysis, analyze
from bot.service.analysispool import AnalysisPool, PendingAnalysis, Stored
from storage.claims import claim_messages
from storage.models import (
    STATE_DROPPED,
    STATE_FAILED,
    STATE_PARKED,
    STATE_PROCESSED,
    STATE_STORED,
    InboundMessage,
)
from storage.rawstore import load_raws
from storage.spool import import_spool

log = logging.getLogger("rootnotify.pipeline")

# A failing message is tried this many times (backoff 30 s doubling, at most
# 1 h: about a day of retries) before it is parked for a person.
MAX_ATTEMPTS = 8
# A message whose parsing killed or hung its process: each attempt can stall
# the worker for [bot] analysis_timeout_seconds, and a transient cause
# (memory short for a while) is gone by the third try; hostile mail must not
# buy a day of stalls.
MAX_ABORTED_ATTEMPTS = 3
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)
BATCH = 100
# Messages acted on in one transaction: one sync shared by them all. The cost
# is the wait of other writers for SQLite's lock; `serve`'s listener spools
# (storage.spool) and does not wait for it, and IMAP intake and the outbox
# take turns with it (storage.writelock), waiting at most the ~0.15 s that 32
# new incidents take. bench/intake.py, p99 250-to-acknowledgement: 5.1-5.2 s
# at 32 against 5.5 s at 16.
TRANSACTION_BATCH = 32


@dataclass
class PipelineReport:
    processed: int = 0
    failed: int = 0
    parked: int = 0


def pending_ids(ctx: Context, limit: int = BATCH) -> list[int]:
    now = ctx.clock.now()
    with ctx.db.read() as session:
        return list(session.exec(
            select(InboundMessage.id)
            .where(or_(
                InboundMessage.state == STATE_STORED,
                (InboundMessage.state == STATE_FAILED)
                & (col(InboundMessage.next_attempt_at) <= now),
            ))
            .order_by(col(InboundMessage.received_at), col(InboundMessage.id))
            .limit(limit)
        ))  # type: ignore[arg-type]


@dataclass
class _Prepared:
    inbound_id: int
    analysis: Analysis | None
    error: Exception | None


def _read(ctx: Context, ids: list[int]) -> list[Stored]:
    """The messages of `ids` still to be processed, with their raw bytes, in `ids` order."""
    with ctx.db.read() as session:
        # One read for the batch: a session and a query per message were a
        # tenth of the pipeline's time on small forms (bench/intake.py).
        rows = session.exec(select(InboundMessage.id, InboundMessage.state,
                                   InboundMessage.received_at, InboundMessage.envelope_from)
                            .where(col(InboundMessage.id).in_(ids))).all()
        waiting = {row[0]: row for row in rows
                   if row[1] not in (STATE_PROCESSED, STATE_PARKED, STATE_DROPPED)}
        raws = load_raws(session, list(waiting))
    # A message without its raw bytes gets b"" here and fails in `_prepare`.
    return [Stored(i, raws.get(i, b""), waiting[i][2], waiting[i][3])
            for i in ids if i in waiting]


def _prepare(ctx: Context, stored: list[Stored],
             analysed: dict[int, Analysis | AnalysisAborted] | None = None
             ) -> list[_Prepared]:
    """Each message's analysis: the pool's (`analysed`), or made here, outside any transaction.

    A message the pool gave up on (it killed or hung its child) is not parsed
    here: it would take this process down or stall it.
    """
    prepared = []
    for item in stored:
        if not item.raw:
            # The raw bytes were stored before the 250: without them no retry
            # can succeed (and the pool would have analysed an empty mail).
            missing = PermanentProcessingError(f"no raw message {item.inbound_id}")
            prepared.append(_Prepared(item.inbound_id, None, missing))
            continue
        analysis = (analysed or {}).get(item.inbound_id)
        if isinstance(analysis, AnalysisAborted):
            prepared.append(_Prepared(item.inbound_id, None, analysis))
            continue
        if analysis is not None:
            prepared.append(_Prepared(item.inbound_id, analysis, None))
            continue
        try:
            analysis = analyze(item.raw, ctx.config, ctx.trust, received_at=item.received_at,
                               envelope_from=item.envelope_from)
        except Exception as exc:
            prepared.append(_Prepared(item.inbound_id, None, exc))
        else:
            prepared.append(_Prepared(item.inbound_id, analysis, None))
    return prepared


def _store_before_acting(ctx: Context, prepared: list[_Prepared]) -> None:
    """Bulk data that needs no decision of the act goes in first, in short transactions.

    A CA's certificate list in its own incident can hold millions of rows;
    stored inside the act transaction it held the write lock for as long as
    the list took (~50 s for 1,000,000 rows), and SMTP intake, which must
    commit before answering 250, timed out behind it. Its chunks are
    idempotent and their progress is recorded (bot.decide.handlers.certificates), so a
    failure here or in the act is retried like any other.
    """
    for item in prepared:
        if item.analysis is None or not item.analysis.certificate_lists:
            continue
        try:
            store_lists_before_acting(ctx, item.inbound_id, item.analysis)
        except Exception as exc:
            item.error = exc


def process_batch(ctx: Context, ids: list[int]) -> dict[int, str]:
    """Analyse and act on several messages; see `_act_on`."""
    return _act_on(ctx, _prepare(ctx, _read(ctx, ids)))


class _ShareFailed(Exception):
    """A message failed while the batch was acted on without savepoints."""


def _act_on(ctx: Context, prepared: list[_Prepared]) -> dict[int, str]:
    """Act on several messages in one transaction; one that fails is recorded alone.

    One commit (one sync) for the batch is what keeps the pipeline up with the
    listener. The batch is first acted on as a whole; if any message fails,
    that transaction is rolled back and the batch acted on again with a
    savepoint per message, so the failing one is rolled back and recorded as
    failed and the others commit. A savepoint per message from the start cost
    two flushes and two statements a message (~10% of the pipeline's time on
    small forms), and failures are rare.
    """
    if not prepared:
        return {}
    _store_before_acting(ctx, prepared)
    if sum(1 for item in prepared if item.error is None) > 1:
        try:
            return _act_in_one_transaction(ctx, prepared, savepoints=False)
        except _ShareFailed as failed:
            log.info("a message of a batch of %d failed (%s); acting on each apart",
                     len(prepared), failed.__cause__)
    return _act_in_one_transaction(ctx, prepared, savepoints=True)


def _act_in_one_transaction(ctx: Context, prepared: list[_Prepared], savepoints: bool
                            ) -> dict[int, str]:
    states: dict[int, str] = {}
    with ctx.db.write() as session:
        # Claimed (storage.claims): a worker on another host skips these rows
        # until this transaction ends, and then sees them processed.
        rows = claim_messages(session, [item.inbound_id for item in prepared])
        for item in prepared:
            inbound = rows.get(item.inbound_id)
            if inbound is None or inbound.state in (STATE_PROCESSED, STATE_PARKED, STATE_DROPPED):
                continue  # another worker holds it, or finished it meanwhile
            error = item.error
            if error is None:
                assert item.analysis is not None
                try:
                    with session.begin_nested() if savepoints else contextlib.nullcontext():
                        act(session, ctx, inbound, item.analysis)
                        inbound.state = STATE_PROCESSED
                        inbound.processed_at = ctx.clock.now()
                        inbound.last_error = None
                        session.add(inbound)
                except Exception as exc:
                    if not savepoints:
                        raise _ShareFailed() from exc  # the whole transaction rolls back
                    error = exc
                    session.expire_all()  # what the savepoint undid must be re-read
                    inbound = session.get(InboundMessage, item.inbound_id)
                    assert inbound is not None
            if error is not None:
                _record_failure(ctx, inbound, error)
                session.add(inbound)
            states[item.inbound_id] = inbound.state
    return states


def process_one(ctx: Context, inbound_id: int) -> str:
    """Process one stored message; returns its new state."""
    return process_batch(ctx, [inbound_id]).get(inbound_id, "missing")


def _record_failure(ctx: Context, inbound: InboundMessage, exc: Exception) -> None:
    detail = without_nul(f"{type(exc).__name__}: {exc}")  # hostile text ends up in errors
    # One line for the operator; where it failed is detail for a developer (-v).
    log.error("message %d failed: %s", inbound.id, detail)
    log.debug("message %d failed at:\n%s", inbound.id,
              "".join(traceback.format_exception(exc, limit=-3)))
    inbound.attempts += 1
    inbound.last_error = detail[:2000]
    limit = MAX_ABORTED_ATTEMPTS if isinstance(exc, AnalysisAborted) else MAX_ATTEMPTS
    if isinstance(exc, PermanentProcessingError) or inbound.attempts >= limit:
        inbound.state = STATE_PARKED
        inbound.next_attempt_at = None
        log.error("message %d parked after %d attempts; a person must look "
                  "(rootnotify reprocess %d)", inbound.id, inbound.attempts, inbound.id)
    else:
        inbound.state = STATE_FAILED
        delay = min(FIRST_RETRY * 2 ** (inbound.attempts - 1), MAX_RETRY)
        inbound.next_attempt_at = ctx.clock.now() + delay


def _submit(ctx: Context, pool: AnalysisPool, chunk: list[int]
            ) -> tuple[list[Stored], PendingAnalysis]:
    stored = _read(ctx, chunk)
    return stored, pool.submit(stored)


def process_pending(ctx: Context, limit: int | None = None,
                    on_progress: Callable[[], None] | None = None,
                    pool: AnalysisPool | None = None,
                    on_done: Callable[[int], None] | None = None) -> PipelineReport:
    """Process every message that is due, oldest first, in batches, until none is left.

    With an `AnalysisPool`, analysis runs in its child processes a batch ahead.
    `on_done` is told how many messages each batch finished (a progress bar).
    """
    report = PipelineReport()
    seen: set[int] = set()
    chunks: deque[list[int]] = deque()

    def look_for_more() -> None:
        # Mail `serve` spooled goes into the database first, in arrival order.
        import_spool(ctx.db, ctx.config.bot.spool_dir, ctx.config.bot.node_name)
        ids = [i for i in pending_ids(ctx) if i not in seen]
        if limit is not None:
            ids = ids[: max(limit - len(seen), 0)]
        seen.update(ids)
        chunks.extend(ids[start:start + TRANSACTION_BATCH]
                      for start in range(0, len(ids), TRANSACTION_BATCH))

    # With a pool, the next chunk is read and analysed in a child process
    # while this process acts on the current one; the next messages are
    # looked for before the last chunk known is acted on, so that the child
    # is never waited for between two lookups.
    ahead: tuple[list[Stored], PendingAnalysis] | None = None
    look_for_more()
    while chunks:
        chunk = chunks.popleft()
        if pool is None:
            states = process_batch(ctx, chunk)
        else:
            stored, pending = ahead or _submit(ctx, pool, chunk)
            if not chunks:
                look_for_more()
            ahead = _submit(ctx, pool, chunks[0]) if chunks else None
            states = _act_on(ctx, _prepare(ctx, stored, pending.results()))
        if on_progress is not None:
            on_progress()  # e.g. wake the outbox: acknowledgements need not wait
        if on_done is not None:
            on_done(len(states))
        for state in states.values():
            if state == STATE_PROCESSED:
                report.processed += 1
            elif state == STATE_FAILED:
                report.failed += 1
            elif state == STATE_PARKED:
                report.parked += 1
        if not chunks:  # what arrived meanwhile
            look_for_more()
    return report


def requeue(ctx: Context, inbound_id: int | None = None, failed_only: bool = False) -> int:
    """Put messages back to be processed: one by id, or every failed and parked one."""
    with ctx.db.write() as session:
        query = select(InboundMessage)
        if inbound_id is not None:
            query = query.where(InboundMessage.id == inbound_id)
        elif failed_only:
            query = query.where(col(InboundMessage.state).in_([STATE_FAILED, STATE_PARKED]))
        # A processed message is never run again: it would open its incident twice.
        rows = [r for r in session.exec(query) if r.state != STATE_PROCESSED]
        for row in rows:
            row.state = STATE_STORED
            row.attempts = 0
            row.next_attempt_at = None
            session.add(row)
        return len(rows)
