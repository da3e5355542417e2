"""Analysis in child processes, beside the worker that acts on what was analysed before.

Parsing a stored message (MIME, the form, signatures, a final report's
items) needs no database and no decision: it is a pure function of the raw
bytes, the configuration and the trust anchors. In `serve`'s worker it ran
in the same thread as the act, under one GIL, so the pipeline went at the
speed of both added together; bench/intake.py measured ~100 new incidents a
second, ~40% of it analysis. Here the next batch is analysed in a child
process while the worker acts on the current one.

Nothing about correctness rests on the pool. What it returns is exactly what
`analyze` returns in the worker; a message whose analysis failed there, or
that is larger than `POOL_MAX_BYTES`, is analysed again (or only) in the
worker, so its error and traceback are recorded as ever; a child that dies
breaks the pool, and the pool is started again for the next batch while this
one is analysed in the worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bot.analysis import Analysis, analyze
from bot.config import Config, load_config
from bot.trust import Trust, load_trust

log = logging.getLogger("rootnotify.analysispool")

# Larger messages (certificate lists, big attachments) are analysed in the
# worker: their attachments are decoded lazily there, and sending megabytes
# through a pipe both ways would cost more than the parse saves.
POOL_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Stored:
    """What analysing one stored message needs besides the configuration."""

    inbound_id: int
    raw: bytes
    received_at: datetime
    envelope_from: str | None


# One per child process: loaded once by `_start_child`, used for every message.
_child: tuple[Config, Trust] | None = None


def _start_child(config_path: str) -> None:
    global _child
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="parent-watch",
                         daemon=True).start()
    config = load_config(Path(config_path))
    _child = (config, load_trust(config))


def _exit_with(parent_sentinel: int) -> None:
    """End this process when the worker that started it is gone.

    A ProcessPoolExecutor child holds both ends of its task queue, so a worker
    killed outright (SIGKILL, OOM) never closes it: without this the child
    would wait for work for ever, one orphan per crash.
    """
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(0)


def _analyse_in_child(batch: list[Stored]) -> tuple[int, list[Analysis | None]]:
    """This child's pid, and each message's Analysis or None where it failed.

    The worker analyses a failed one again, so that its error is recorded with
    its traceback as ever.
    """
    assert _child is not None, "the pool's initializer did not run"
    config, trust = _child
    results: list[Analysis | None] = []
    for item in batch:
        try:
            results.append(analyze(item.raw, config, trust, received_at=item.received_at,
                                   envelope_from=item.envelope_from))
        except Exception:  # recorded by the worker, which runs it again with its traceback
            results.append(None)
    return os.getpid(), results


def _ready() -> int:
    assert _child is not None, "the pool's initializer did not run"
    return os.getpid()


class PendingAnalysis:
    """A batch handed to the pool; `results` waits for it."""

    def __init__(self, pool: AnalysisPool, batch: Sequence[Stored],
                 future: Future[tuple[int, list[Analysis | None]]] | None) -> None:
        self.pool = pool
        self.batch = list(batch)
        self._future = future

    def results(self) -> dict[int, Analysis]:
        """inbound id → Analysis for what the pool analysed; the rest is the worker's to do."""
        if self._future is None:
            return {}
        try:
            pid, analyses = self._future.result()
        except BrokenProcessPool:
            log.warning("an analysis process died; this batch is analysed in the worker")
            return {}
        except Exception as exc:  # e.g. an Analysis that would not pickle
            log.warning("the analysis pool failed a batch (%s: %s); analysing it in the "
                        "worker", type(exc).__name__, exc)
            return {}
        found = {item.inbound_id: analysis for item, analysis in
                 zip(self.batch, analyses, strict=True) if analysis is not None}
        self.pool.seen(pid, len(found))
        return found


class AnalysisPool:
    """`processes` children analysing batches of small messages, started on first use."""

    def __init__(self, config: Config, processes: int) -> None:
        if config.path is None:
            raise ValueError("the analysis pool needs a configuration file to load")
        self.config_path = str(config.path)
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None
        self.analysed = 0  # messages whose analysis came from a child
        self._pids: set[int] = set()  # the children of the current executor that answered

    def submit(self, batch: Sequence[Stored]) -> PendingAnalysis:
        """Start analysing the small messages of `batch`; larger ones are left to the caller."""
        small = [item for item in batch if len(item.raw) <= POOL_MAX_BYTES]
        if not small:
            return PendingAnalysis(self, [], None)
        try:
            future = self._pool().submit(_analyse_in_child, small)
        except (BrokenProcessPool, RuntimeError) as exc:  # a child died since: start again
            log.warning("analysis pool broken (%s); starting it again", exc)
            self.close()
            future = self._pool().submit(_analyse_in_child, small)
        return PendingAnalysis(self, small, future)

    def start(self) -> None:
        """Start the children and wait until they are ready (else they start on first use)."""
        try:
            self.seen(self._pool().submit(_ready).result(), 0)
        except Exception as exc:  # the worker analyses in-process meanwhile; retried on use
            log.warning("analysis processes did not start (%s: %s)", type(exc).__name__, exc)
            self.close()

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn: a fork of a threaded worker (SQLite connections, the event
            # loop's threads) is not safe to run Python in.
            self._executor = ProcessPoolExecutor(
                max_workers=self.processes, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_child, initargs=(self.config_path,))
        return self._executor

    def seen(self, pid: int, analysed: int) -> None:
        self._pids.add(pid)
        self.analysed += analysed

    def child_pids(self) -> list[int]:
        """The children of the running pool that have answered (for tests and logs)."""
        return sorted(self._pids)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._pids = set()
