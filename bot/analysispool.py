"""Analysis in child processes, beside the worker that acts on what was analysed before.

Parsing a stored message (MIME, the form, signatures, a final report's
items) needs no database and no decision: it is a pure function of the raw
bytes, the configuration and the trust anchors. In `serve`'s worker it ran
in the same thread as the act, under one GIL, so the pipeline went at the
speed of both added together; bench/intake.py measured ~100 new incidents a
second, ~40% of it analysis. Here the next batch is analysed in a child
process while the worker acts on the current one.

What the pool returns is exactly what `analyze` returns in the worker; a
message whose analysis raised there is analysed again in the worker, so its
error and traceback are recorded as ever. Large messages go to the pool too:
a 28 MB certificate list costs ~0.06 s more there (pickling its bytes both
ways) and that is where a parser that runs away is contained.

The pool is also where hostile input is contained. A batch whose child dies
(a crash in a parser, the kernel's out-of-memory kill) or that is not done
within `[bot] analysis_timeout_seconds` is analysed again one message at a
time, each in a child that is killed when it outruns that time; the message
that kills or hangs its child gets an `AnalysisAborted` error, recorded and
retried like any failure, and is never parsed in the worker, where it would
take the worker down or stall all mail behind it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bot.analysis import Analysis, analyze
from bot.config import Config, load_config
from bot.errors import AnalysisAborted
from bot.trust import Trust, load_trust

log = logging.getLogger("rootnotify.analysispool")

@dataclass(frozen=True)
class Stored:
    """What analysing one stored message needs besides the configuration."""

    inbound_id: int
    raw: bytes
    received_at: datetime
    envelope_from: str | None


# How long `close` lets a child finish the message it is parsing.
CLOSE_GRACE_SECONDS = 5.0
# What a child runs per message: `analyze` (a test injects one that crashes or hangs).
Analyse = Callable[..., Analysis]
# One per child process: loaded once by `_start_child`, used for every message.
_child: tuple[Config, Trust, Analyse] | None = None


def _start_child(config_path: str, analyse: Analyse) -> None:
    global _child
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="parent-watch",
                         daemon=True).start()
    config = load_config(Path(config_path))
    _child = (config, load_trust(config), analyse)


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
    config, trust, analyse = _child
    results: list[Analysis | None] = []
    for item in batch:
        try:
            results.append(analyse(item.raw, config, trust, received_at=item.received_at,
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

    def results(self) -> dict[int, Analysis | AnalysisAborted]:
        """inbound id → the pool's Analysis, or why parsing it was aborted.

        A message missing from the answer is the worker's to analyse: its
        analysis raised in the child (the worker records the error with its
        traceback), or the pool failed for a reason not the message's own.
        """
        if self._future is None:
            return {}
        try:
            # The batch before this one was answered already, so from here the
            # child has been on this batch at least as long as we wait.
            pid, analyses = self._future.result(timeout=self.pool.timeout)
        except (BrokenProcessPool, CancelledError):  # cancelled: the pool was closed for
            # an earlier batch's culprit, and this batch may hold one too
            log.warning("an analysis process died during a batch of %d; analysing them one "
                        "at a time to find the cause", len(self.batch))
            return self.pool.one_at_a_time(self.batch)
        except TimeoutError:
            log.warning("a batch of %d was not analysed within %g s; analysing them one at "
                        "a time to find the cause", len(self.batch), self.pool.timeout)
            self.pool.kill()
            return self.pool.one_at_a_time(self.batch)
        except Exception as exc:  # e.g. an Analysis that would not pickle
            log.warning("the analysis pool failed a batch (%s: %s); analysing it in the "
                        "worker", type(exc).__name__, exc)
            return {}
        return self.pool.answered(pid, self.batch, analyses)


class AnalysisPool:
    """`processes` children analysing batches of messages, started on first use."""

    def __init__(self, config: Config, processes: int, analyse: Analyse = analyze) -> None:
        if config.path is None:
            raise ValueError("the analysis pool needs a configuration file to load")
        self.config_path = str(config.path)
        self.processes = processes
        self.timeout = float(config.bot.analysis_timeout_seconds)
        self._analyse = analyse
        self._executor: ProcessPoolExecutor | None = None
        self.analysed = 0  # messages whose analysis came from a child
        self.aborted = 0  # messages that killed or hung their child
        self._pids: set[int] = set()  # the children of the current executor that answered

    def submit(self, batch: Sequence[Stored]) -> PendingAnalysis:
        """Start analysing `batch` in a child; `results` of what this returns waits for it."""
        if not batch:
            return PendingAnalysis(self, [], None)
        return PendingAnalysis(self, batch, self._submit(list(batch)))

    def _submit(self, batch: list[Stored]) -> Future[tuple[int, list[Analysis | None]]]:
        try:
            return self._pool().submit(_analyse_in_child, batch)
        except (BrokenProcessPool, RuntimeError) as exc:  # a child died since: start again
            log.warning("analysis pool broken (%s); starting it again", exc)
            self.close()
            return self._pool().submit(_analyse_in_child, batch)

    def answered(self, pid: int, batch: Sequence[Stored], analyses: list[Analysis | None]
                 ) -> dict[int, Analysis | AnalysisAborted]:
        found: dict[int, Analysis | AnalysisAborted] = {
            item.inbound_id: analysis for item, analysis in zip(batch, analyses, strict=True)
            if analysis is not None}
        self._pids.add(pid)
        self.analysed += len(found)
        return found

    def one_at_a_time(self, batch: Sequence[Stored]) -> dict[int, Analysis | AnalysisAborted]:
        """Analyse each message of `batch` alone, so that one that kills or hangs its
        child is known, recorded as aborted, and costs no other message anything."""
        self.close()  # a broken or killed pool is of no more use
        found: dict[int, Analysis | AnalysisAborted] = {}
        for done, item in enumerate(batch):
            # A child that cannot even start is no message's fault: then the
            # worker parses what is left, as with no pool at all.
            if self._executor is None and not self.start():
                log.error("analysis processes do not start; the worker parses the %d "
                          "message(s) left of this batch itself", len(batch) - done)
                break
            future = self._submit([item])
            try:
                pid, analyses = future.result(timeout=self.timeout)
            except BrokenProcessPool:
                found[item.inbound_id] = self._aborted(
                    item, f"the process parsing it died ({self._how_children_ended()})")
                self.close()
            except TimeoutError:
                self.kill()
                found[item.inbound_id] = self._aborted(
                    item, f"parsing it did not end within {self.timeout:g} s; its process "
                          f"was killed")
                self.close()
            except Exception as exc:  # not the message's fault: the worker analyses it
                log.warning("the analysis pool failed message %d (%s: %s); analysing it in "
                            "the worker", item.inbound_id, type(exc).__name__, exc)
            else:
                found.update(self.answered(pid, [item], analyses))
        return found

    def _aborted(self, item: Stored, why: str) -> AnalysisAborted:
        log.error("message %d: %s", item.inbound_id, why)
        self.aborted += 1
        return AnalysisAborted(why)

    def kill(self, processes: Sequence[multiprocessing.process.BaseProcess] | None = None
             ) -> None:
        """Kill the children outright: one is stuck in a parse that does not end."""
        for process in self._processes() if processes is None else processes:
            if process.is_alive():
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.kill(process.pid, signal.SIGKILL)

    def _processes(self) -> list[multiprocessing.process.BaseProcess]:
        # ProcessPoolExecutor neither kills a stuck child nor tells how one
        # ended (before Python 3.14); its process table is the only way to both.
        table = getattr(self._executor, "_processes", None) or {}
        return list(table.values())

    def _how_children_ended(self) -> str:
        for process in self._processes():
            process.join(timeout=1)
            code = process.exitcode
            if code is not None and code < 0:
                return f"killed by {signal.Signals(-code).name}"
            if code:
                return f"exit status {code}"
        return "ended abruptly"

    def start(self) -> bool:
        """Start the children and wait until they are ready; False (logged) if they cannot."""
        try:
            self._pids.add(self._pool().submit(_ready).result(timeout=self.timeout))
        except Exception as exc:  # the worker analyses in-process meanwhile; retried on use
            log.warning("analysis processes did not start (%s: %s)", type(exc).__name__, exc)
            self.kill()
            self.close()
            return False
        return True

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn: a fork of a threaded worker (SQLite connections, the event
            # loop's threads) is not safe to run Python in.
            self._executor = ProcessPoolExecutor(
                max_workers=self.processes, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_child, initargs=(self.config_path, self._analyse))
        return self._executor

    def child_pids(self) -> list[int]:
        """The children of the running pool that have answered (for tests and logs)."""
        return sorted(self._pids)

    def close(self) -> None:
        """Stop the children: at once when idle, after `CLOSE_GRACE_SECONDS` when stuck."""
        if self._executor is not None:
            processes = self._processes()
            self._executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.join(CLOSE_GRACE_SECONDS)
            self.kill(processes)
            self._executor.shutdown(wait=True)
            self._executor = None
        self._pids = set()
