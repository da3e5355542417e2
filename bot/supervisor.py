"""`rootnotify serve`: an intake process and a worker process, started and stopped together.

Parsing, signature checks, deciding and rendering are CPU work; in the
process that answers SMTP clients they would compete with the listener for
Python's GIL, and the intake rate measured in `bench/intake.py` fell to a
fifth of the bare listener's. So, as mail servers separate their receiving
and delivery daemons, the listener and the group-commit writer run in this
process and the pipeline, outbox and scheduler in a child process. The
database is their only shared state; a pipe carries "something was stored"
(and "stop"). On SIGTERM or SIGINT the listener stops taking mail, the worker
finishes what is in flight, and both exit 0. A worker that dies is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
from multiprocessing.connection import Connection
from pathlib import Path

from bot.app import Service
from bot.config import Config, load_config
from bot.logs import setup_logging

log = logging.getLogger("rootnotify.supervisor")

WAKE = b"w"
STOP = b"q"
# A worker that dies is started again after this pause, so a crash loop
# (say, a database that cannot be opened) does not spin the CPU.
RESTART_DELAY_SECONDS = 2.0
# How long the worker may take to finish in-flight work after "stop".
WORKER_STOP_TIMEOUT_SECONDS = 120.0


def _worker_main(config_path: str, conn: Connection, log_json: bool, log_level: int) -> None:
    """Entry point of the worker process."""
    setup_logging(json_lines=log_json, level=log_level)
    config = load_config(Path(config_path))
    raise SystemExit(asyncio.run(_run_worker(config, conn)))


async def _run_worker(config: Config, conn: Connection) -> int:
    service = Service(config, role="worker")
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def on_readable() -> None:
        try:
            while conn.poll():
                data = conn.recv_bytes()
                if STOP in data:
                    done.set()
                service.stored.set()
        except (EOFError, OSError):
            # The intake process is gone: finish what is in flight and stop.
            loop.remove_reader(conn.fileno())
            done.set()

    loop.add_reader(conn.fileno(), on_readable)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await service.start()
    log.info("worker started (pipeline, outbox, scheduler)")
    await done.wait()
    with contextlib.suppress(ValueError, OSError):
        loop.remove_reader(conn.fileno())
    await service.stop()
    log.info("worker stopped")
    return 0


class Supervisor:
    def __init__(self, config: Config, log_json: bool = False,
                 log_level: int = logging.INFO) -> None:
        self.config = config
        self.log_json = log_json
        self.log_level = log_level
        self.mp = multiprocessing.get_context("spawn")
        self.stopping = False
        self.process: multiprocessing.process.BaseProcess | None = None
        self.sender: Connection | None = None
        self.wake = asyncio.Event()

    def _spawn(self) -> None:
        receiver, sender = self.mp.Pipe(duplex=False)
        process = self.mp.Process(
            target=_worker_main, name="rootnotify-worker",
            args=(str(self.config.path), receiver, self.log_json, self.log_level))
        process.start()
        receiver.close()  # the child holds its own copy
        self.process, self.sender = process, sender
        self.wake.set()  # anything stored while no worker ran is processed now

    def _send(self, data: bytes) -> None:
        if self.sender is None:
            return
        with contextlib.suppress(BrokenPipeError, OSError):  # a dead worker is restarted
            self.sender.send_bytes(data)

    async def _forward_wakes(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()  # many stores between two sends become one wake
            self._send(WAKE)

    async def _watch_worker(self) -> None:
        while not self.stopping:
            process = self.process
            assert process is not None
            await asyncio.to_thread(process.join)
            if self.stopping:
                return
            log.error("worker process exited with %s; restarting it in %.0f s",
                      process.exitcode, RESTART_DELAY_SECONDS)
            await asyncio.sleep(RESTART_DELAY_SECONDS)
            if not self.stopping:
                self._spawn()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._spawn()
        intake = Service(self.config, role="intake",
                         on_stored=lambda: loop.call_soon_threadsafe(self.wake.set))
        try:
            await intake.start()
        except BaseException:
            self.stopping = True
            self._send(STOP)
            raise
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        tasks = [asyncio.create_task(self._forward_wakes()),
                 asyncio.create_task(self._watch_worker())]
        log.info("rootnotify serving %s (storage %s)", self.config.bot.address,
                 self.config.storage_url.split("?")[0])
        await done.wait()
        log.info("stopping: no new mail taken; the worker finishes what is in flight")
        self.stopping = True
        await intake.stop()  # every message that got 250 is committed by now
        self._send(STOP)
        process = self.process
        assert process is not None
        await asyncio.to_thread(process.join, WORKER_STOP_TIMEOUT_SECONDS)
        for task in tasks:
            task.cancel()
        if process.is_alive():
            log.error("worker did not stop within %.0f s; terminating it",
                      WORKER_STOP_TIMEOUT_SECONDS)
            process.terminate()
            return 1
        return 0 if process.exitcode == 0 else 1


async def serve(config: Config, log_json: bool = False, log_level: int = logging.INFO) -> int:
    return await Supervisor(config, log_json, log_level).run()
