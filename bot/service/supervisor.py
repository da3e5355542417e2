"""`rootnotify serve`: an intake process, a worker process and a sender process, as one.

Parsing, signature checks, deciding and rendering are CPU work; in the
process that answers SMTP clients they would compete with the listener for
Python's GIL, and the intake rate measured in `bench/intake.py` fell to a
fifth of the bare listener's. So, as mail servers separate their receiving
and delivery daemons, the listener and the group-commit writer run in this
process, the pipeline and the scheduler in a worker process, and the outbox
sender in a sender process of its own: in the worker's process its waits on
the relay's replies each had to win the GIL back from the pipeline, and the
two slowed each other (bench/intake.py: a third of the worker's samples).

The database is the processes' only shared state; pipes carry the wake-ups:
"something was stored" from here to the worker, "mail was queued" from the
worker through here to the sender, and "stop". On SIGTERM or SIGINT the
listener stops taking mail, the worker finishes what is in flight, then the
sender sends what is queued, and all exit 0. A child that dies is restarted.

Stopping works at any moment, start-up included: the signal handlers are
installed before anything starts, and the children are started with SIGINT
ignored (a Ctrl-C in a terminal reaches the whole process group; the
children stop when this process tells them, so a Ctrl-C neither kills them
half-way nor gets them restarted).

With `[web] enabled` the staff web view (bot/operator/web) is one more child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path

from bot.clock import SystemClock
from bot.config import Config, load_config
from bot.intake.smtp import reserve_port
from bot.logs import setup_logging
from bot.node import (
    NODE_ID_ENV,
    heartbeats,
    register,
    stopped,
    this_node,
)
from bot.service.app import Service
from storage.db import open_database

log = logging.getLogger("rootnotify.supervisor")

WAKE = b"w"  # to the worker: a message was stored
QUEUED = b"o"  # from the worker, and on to the sender: a mail was queued
READY = b"r"  # from a child: started
STOP = b"q"
# The listener opens once the children are ready, so that a burst of mail at
# start does not share the CPU with their start-up (imports, the analysis
# processes); if they take longer, it opens anyway: intake never waits for them.
READY_TIMEOUT_SECONDS = 30.0
# A child that dies is started again after this pause, so a crash loop (say,
# a database that cannot be opened) does not spin the CPU.
RESTART_DELAY_SECONDS = 2.0
# How long a child may take to finish in-flight work after "stop".
CHILD_STOP_TIMEOUT_SECONDS = 120.0
# The worker, the sender and the worker's analysis processes run this much
# nicer than the listener: in a burst that fills the CPU, answering clients
# comes first and the rest catches up after. bench/intake.py on 2 cores,
# intake over the bare listener / p99 250-to-acknowledgement: nice 5: 0.44-0.53
# / 4.2-4.7 s (four runs); nice 10: 0.45-0.57 / 4.1-4.4 s; nice 15: 0.52-0.60
# / 4.1-4.7 s (three runs each). A niceness is a weight, not a ban: the
# children still get a share of a CPU the listener keeps busy.
CHILD_NICENESS = 10
# The children, in the order they stop: what the worker queues while it
# finishes is still sent by the sender.
CHILD_ROLES = ("worker", "sender")
# With `[web] enabled`, the web view is one more child, stopped first.
WEB_ROLE = "web"
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@contextlib.contextmanager
def _sigint_ignored_by_children() -> Iterator[None]:
    """Processes started inside ignore SIGINT; one that reaches us meanwhile is not lost.

    An ignored signal stays ignored through fork and exec, and Python keeps
    it so: a child never takes the terminal's Ctrl-C, which is ours (we tell
    the children to stop). Blocked first, so that a SIGINT arriving while it
    is ignored here waits (Linux never discards a blocked signal) and reaches
    our own handler when it is unblocked.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may change handlers; the children start here
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _set_process_title(title: str) -> None:
    """Name the process in `ps` (listener, worker and sender look alike otherwise)."""
    import setproctitle

    setproctitle.setproctitle(title)



def _child_main(role: str, config_path: str, conn: Connection, log_json: bool,
                log_level: int) -> None:
    """Entry point of a child process."""
    # Started with SIGINT ignored (`_Child.spawn`): a Ctrl-C is the
    # supervisor's, which tells its children to stop; the analysis processes
    # inherit it ignored too.
    _set_process_title(f"rootnotify {role}")
    setup_logging(json_lines=log_json, level=log_level)
    config = load_config(Path(config_path))
    os.nice(CHILD_NICENESS)
    raise SystemExit(asyncio.run(_run_child(role, config, conn)))


async def _run_child(role: str, config: Config, conn: Connection) -> int:
    sending = threading.Lock()  # the pipeline's and the scheduler's threads both tell

    def tell(signal_byte: bytes) -> None:
        with sending, contextlib.suppress(OSError):  # the supervisor is gone: we stop soon
            conn.send_bytes(signal_byte)

    service = None if role == "web" else Service(
        config, role=role, on_queued=(lambda: tell(QUEUED)) if role == "worker" else None)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def on_readable() -> None:
        try:
            while conn.poll():
                data = conn.recv_bytes()
                if STOP in data:
                    done.set()
                if WAKE in data and service is not None:
                    service.stored.set()
                if QUEUED in data and service is not None:
                    service.queued.set()
        except (EOFError, OSError):
            # The intake process is gone: finish what is in flight and stop.
            loop.remove_reader(conn.fileno())
            done.set()

    loop.add_reader(conn.fileno(), on_readable)
    loop.add_signal_handler(signal.SIGTERM, done.set)
    if service is None:
        return await _run_web(config, done, tell)
    await service.start()
    tell(READY)
    log.info("%s started", role)
    await done.wait()
    with contextlib.suppress(ValueError, OSError):
        loop.remove_reader(conn.fileno())
    await service.stop()
    log.info("%s stopped", role)
    return 0


async def _run_web(config: Config, done: asyncio.Event,
                   tell: Callable[[bytes], None]) -> int:
    """The web view's process: pages until "stop" (it keeps no work in flight)."""
    from bot.operator.web.server import serve_web

    started = asyncio.Event()
    serving = asyncio.create_task(serve_web(config, done, started=started))
    waiting = asyncio.create_task(started.wait())
    await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if serving.done():
        serving.result()  # it could not listen: the error, and a restart later
    tell(READY)
    await serving
    log.info("web stopped")
    return 0


class _Child:
    """One child process and our end of its pipe; started again if it dies."""

    def __init__(self, supervisor: Supervisor, role: str) -> None:
        self.supervisor = supervisor
        self.role = role
        self.process: multiprocessing.process.BaseProcess | None = None
        self.conn: Connection | None = None
        self.wake = asyncio.Event()  # set: send WAKE (worker) or QUEUED (sender)
        self.ready = asyncio.Event()
        # `watch` and `stop` both wait for the process, each in a thread. Two
        # waitpid calls at once leave one with ECHILD, and multiprocessing then
        # reports the process alive to that one: a clean stop was taken for a
        # hang (seen under load). One at a time, the second finds the exit code.
        self._joining = threading.Lock()

    def _join(self, process: multiprocessing.process.BaseProcess,
              timeout: float | None = None) -> None:
        """`process.join(timeout)`, never beside another join of ours."""
        if self._joining.acquire(timeout=-1 if timeout is None else timeout):
            try:
                process.join(timeout)
            finally:
                self._joining.release()

    def spawn(self) -> None:
        sup = self.supervisor
        ours, theirs = sup.mp.Pipe(duplex=True)
        process = sup.mp.Process(
            target=_child_main, name=f"rootnotify-{self.role}",
            args=(self.role, str(sup.config.path), theirs, sup.log_json, sup.log_level))
        with _sigint_ignored_by_children():
            process.start()
        theirs.close()  # the child holds its own copy
        self.process, self.conn = process, ours
        log.info("%s process started (pid %s)", self.role, process.pid)
        asyncio.get_running_loop().add_reader(ours.fileno(), self._readable, ours)
        self.wake.set()  # anything stored or queued while it was down is handled now

    def _readable(self, conn: Connection) -> None:
        try:
            while conn.poll():
                data = conn.recv_bytes()
                if READY in data:
                    self.ready.set()
                if QUEUED in data:
                    self.supervisor.children["sender"].wake.set()
        except (EOFError, OSError):  # it died: `watch` restarts it with a new pipe
            asyncio.get_running_loop().remove_reader(conn.fileno())

    def send(self, data: bytes) -> None:
        if self.conn is None:
            return
        with contextlib.suppress(BrokenPipeError, OSError):  # a dead child is restarted
            self.conn.send_bytes(data)

    async def forward_wakes(self) -> None:
        signal_byte = WAKE if self.role == "worker" else QUEUED
        while True:
            await self.wake.wait()
            self.wake.clear()  # many wake-ups between two sends become one
            self.send(signal_byte)

    async def watch(self) -> None:
        sup = self.supervisor
        while not sup.stopping:
            process = self.process
            assert process is not None
            await asyncio.to_thread(self._join, process)
            if sup.stopping:
                return
            log.error("%s process exited with %s; restarting it in %.0f s",
                      self.role, process.exitcode, RESTART_DELAY_SECONDS)
            self._close()
            await asyncio.sleep(RESTART_DELAY_SECONDS)
            if not sup.stopping:
                self.spawn()

    def _close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self.conn.close()
            self.conn = None

    async def stop(self) -> bool:
        """Ask it to finish and wait; True if it exited 0 in time."""
        self.send(STOP)
        process = self.process
        if process is None:
            return True
        await asyncio.to_thread(self._join, process, CHILD_STOP_TIMEOUT_SECONDS)
        if process.is_alive():
            log.error("%s did not stop within %.0f s; terminating it", self.role,
                      CHILD_STOP_TIMEOUT_SECONDS)
            process.terminate()
            return False
        return process.exitcode == 0


class Supervisor:
    def __init__(self, config: Config, log_json: bool = False,
                 log_level: int = logging.INFO) -> None:
        self.config = config
        self.log_json = log_json
        self.log_level = log_level
        self.mp = multiprocessing.get_context("spawn")
        self.stopping = False
        roles = ((WEB_ROLE,) if config.web.enabled else ()) + CHILD_ROLES
        self.children = {role: _Child(self, role) for role in roles}

    async def _stop_children(self) -> bool:
        clean = True
        for role in self.children:
            clean = await self.children[role].stop() and clean
        return clean

    async def _children_ready(self) -> bool:
        """Wait until every child said it is ready; False after READY_TIMEOUT_SECONDS."""
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                for child in self.children.values():
                    await child.ready.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, done.set)
        _set_process_title("rootnotify serve")
        # Taken before anything starts: a port in use stops `serve` here.
        sock = reserve_port(self.config) if self.config.smtp.enabled else None
        try:
            return await self._run(loop, done, sock)
        finally:
            if sock is not None:
                sock.close()

    async def _run(self, loop: asyncio.AbstractEventLoop, done: asyncio.Event,
                   sock: socket.socket | None) -> int:
        # Registered before the children start: they claim work in its name.
        node = this_node(self.config.bot.node_name)
        os.environ[NODE_ID_ENV] = node.id
        db = open_database(self.config.storage_url)
        clock = SystemClock()
        await asyncio.to_thread(register, db, node, clock)
        beating = asyncio.create_task(heartbeats(db, node, clock))
        try:
            return await self._serve(loop, done, sock)
        finally:
            beating.cancel()
            with contextlib.suppress(Exception):  # the database may be what failed
                await asyncio.to_thread(stopped, db, node, clock)
            db.dispose()

    async def _serve(self, loop: asyncio.AbstractEventLoop, done: asyncio.Event,
                     sock: socket.socket | None) -> int:
        for child in self.children.values():
            child.spawn()
        worker = self.children["worker"]
        stop_asked = asyncio.create_task(done.wait())
        ready = asyncio.create_task(self._children_ready())
        await asyncio.wait([stop_asked, ready], return_when=asyncio.FIRST_COMPLETED)
        if done.is_set():
            ready.cancel()
            log.info("stopping during start-up")
            self.stopping = True
            return 0 if await self._stop_children() else 1
        if not ready.result():
            log.warning("worker or sender not ready after %.0f s; taking mail in anyway",
                        READY_TIMEOUT_SECONDS)
        intake = Service(self.config, role="intake",
                         on_stored=lambda: loop.call_soon_threadsafe(worker.wake.set),
                         smtp_socket=sock)
        try:
            await intake.start()
        except BaseException:
            self.stopping = True
            await self._stop_children()
            raise
        tasks = [asyncio.create_task(coro) for child in self.children.values()
                 for coro in (child.forward_wakes(), child.watch())]
        log.info("rootnotify serving %s (storage %s)", self.config.bot.address,
                 self.config.storage_url.split("?")[0])
        await stop_asked
        log.info("stopping: no new mail taken; the worker and the sender finish what is "
                 "in flight")
        self.stopping = True
        await intake.stop()  # every message that got 250 is committed by now
        clean = await self._stop_children()
        for task in tasks:
            task.cancel()
        return 0 if clean else 1


async def serve(config: Config, log_json: bool = False, log_level: int = logging.INFO) -> int:
    return await Supervisor(config, log_json, log_level).run()
