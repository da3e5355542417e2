"""Wires config, storage, listeners and workers together into a `Service`.

A Service plays one of four roles: "intake" (SMTP listener, IMAP poller and
the group-commit writer: take mail in and store it), "worker" (the pipeline
and the scheduler), "sender" (the outbox sender), or "all" of them in one
process (tests, embedding, `tick`). Worker and sender are loops that do their
blocking work in threads, each woken by an event or by its interval.
`bot.service.supervisor` runs `serve` as an intake, a worker and a sender process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from bot.clock import Clock, SystemClock
from bot.config import Config
from bot.context import Context, make_context
from bot.intake.smtp import IntakeHandler, start_smtp_server
from bot.outbox.sender import Transport, deliver_due, transport_for
from bot.service.analysispool import AnalysisPool
from bot.service.pipeline import process_pending
from bot.service.scheduler import run_scheduler
from storage.db import Database, open_database
from storage.rawstore import GroupCommitWriter
from storage.spool import SpoolWriter

log = logging.getLogger("rootnotify.app")

# The contract: a queued mail reaches the relay within 5 seconds in `serve`.
OUTBOX_INTERVAL_SECONDS = 2.0
# The pipeline also looks on its own this often, for retries that fall due.
PIPELINE_INTERVAL_SECONDS = 5.0


ROLES = ("all", "intake", "worker", "sender")


class Service:
    def __init__(self, config: Config, clock: Clock | None = None,
                 transport: Transport | None = None, db: Database | None = None,
                 role: str = "all", on_stored: Callable[[], None] | None = None,
                 on_queued: Callable[[], None] | None = None,
                 smtp_socket: socket.socket | None = None) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        self.role = role
        # The listener's address, bound beforehand by `serve` (bot.intake.smtp.reserve_port).
        self._smtp_socket = smtp_socket
        # Who is told that a message was stored: our own pipeline, or (in the
        # intake process) the worker process. Called from any thread.
        self._on_stored = on_stored
        # Who is told that a mail was queued: our own sender, or (in the worker
        # process) the sender process. Called from any thread.
        self._on_queued = on_queued
        self.config = config
        self.clock = clock or SystemClock()
        self.db = db or open_database(config.storage_url)
        self.ctx: Context = make_context(config, self.db, self.clock)
        self.transport = transport or transport_for(config)
        # `serve`'s worker parses mail in child processes beside its act.
        processes = config.bot.analysis_processes
        self.analysis_pool = (AnalysisPool(config, processes)
                              if role == "worker" and processes > 0 and config.path else None)
        # `serve`'s intake process on SQLite spools (storage.spool) so that
        # answering 250 never waits for the worker's database lock; in one
        # process the group commit goes straight into the database.
        # On PostgreSQL the commit itself comes before 250: a spool on this
        # host's disk would be lost with the host, while the other hosts go on.
        spools = role == "intake" and self.db.engine.dialect.name == "sqlite"
        self.writer: GroupCommitWriter | SpoolWriter = (
            SpoolWriter(config.bot.spool_dir) if spools else GroupCommitWriter(self.db))
        self.stored = asyncio.Event()
        self.queued = asyncio.Event()
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._imap: object | None = None
        self._loop_ref: asyncio.AbstractEventLoop | None = None

    @property
    def takes_mail_in(self) -> bool:
        return self.role in ("all", "intake")

    @property
    def works(self) -> bool:
        return self.role in ("all", "worker")

    @property
    def sends(self) -> bool:
        return self.role in ("all", "sender")

    async def start(self) -> None:
        loop = self._loop_ref = asyncio.get_running_loop()
        if self.takes_mail_in:
            await self._start_intake(loop)
        if self.works:
            self._start_workers()
            if self.analysis_pool is not None:
                # Its children import and load the configuration now, not
                # when the first mail is waiting for them.
                await asyncio.to_thread(self.analysis_pool.start)
        if self.sends:
            self._start_sender()
        self.ready.set()

    def stored_wake(self) -> Callable[[], None]:
        """What intake calls after a commit: wake the pipeline, here or in the worker."""
        if self._on_stored is not None:
            return self._on_stored
        return self._threadsafe_wake()

    async def _start_intake(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.config.imap.enabled:
            self.config.imap.require_password()
            # Wrong IMAP credentials stop `serve` here, before it listens.
            from bot.intake.imap.poller import check_at_start

            await asyncio.to_thread(check_at_start, self.config.imap)
        self.writer.start()
        if self.config.smtp.enabled:
            handler = IntakeHandler(self.config, self.writer, self.clock,
                                    on_stored=self.stored_wake())
            self.server = await start_smtp_server(self.config, handler, loop,
                                                  sock=self._smtp_socket)
        if self.config.imap.enabled:
            self._start_imap()

    def _start_workers(self) -> None:
        self._tasks += [
            asyncio.create_task(self._loop("pipeline", self.stored, PIPELINE_INTERVAL_SECONDS,
                                           self._run_pipeline)),
            asyncio.create_task(self._loop("scheduler", None, self.config.scheduler.interval,
                                           self._run_scheduler)),
        ]

    def _start_sender(self) -> None:
        self._tasks.append(asyncio.create_task(
            self._loop("outbox", self.queued, OUTBOX_INTERVAL_SECONDS, self._run_outbox)))

    def _start_imap(self) -> None:
        from bot.intake.imap.poller import ImapPoller  # only when enabled

        poller = ImapPoller(self.config, self.db, self.clock, on_stored=self.stored_wake())
        self._imap = poller
        self._tasks.append(asyncio.create_task(poller.run(self.stopping)))

    def _threadsafe_wake(self) -> Callable[[], None]:
        loop = asyncio.get_running_loop()
        return lambda: loop.call_soon_threadsafe(self.stored.set)

    def _run_pipeline(self) -> None:
        process_pending(self.ctx, on_progress=self.queued_soon, pool=self.analysis_pool)

    def queued_soon(self) -> None:
        """Wake the outbox sender, here or in the sender process (called from worker threads)."""
        if self._on_queued is not None:
            self._on_queued()
        elif self._loop_ref is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
                self._loop_ref.call_soon_threadsafe(self.queued.set)

    def _run_outbox(self) -> None:
        deliver_due(self.ctx, self.transport)

    def _run_scheduler(self) -> None:
        run_scheduler(self.ctx)
        self.queued_soon()

    async def _loop(self, name: str, event: asyncio.Event | None, interval: float,
                    work: Callable[[], None]) -> None:
        while not self.stopping.is_set():
            try:
                await asyncio.to_thread(work)
            except Exception:
                log.exception("%s worker failed; it runs again in %.0f s", name, interval)
            waiters = [asyncio.create_task(self.stopping.wait())]
            if event is not None:
                waiters.append(asyncio.create_task(event.wait()))
            _done, pending = await asyncio.wait(waiters, timeout=interval,
                                                return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if event is not None:
                event.clear()

    async def stop(self) -> None:
        """Stop taking mail, let the workers finish what is in flight, close the store."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        self.stopping.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.takes_mail_in:
            await asyncio.to_thread(self.writer.stop)
        # What arrived just before the stop is processed and sent now, not at next start.
        if self.works:
            await asyncio.to_thread(process_pending, self.ctx, on_progress=self.queued_soon)
        if self.sends:
            await asyncio.to_thread(deliver_due, self.ctx, self.transport)
        if self.analysis_pool is not None:
            await asyncio.to_thread(self.analysis_pool.close)
        self.db.dispose()
