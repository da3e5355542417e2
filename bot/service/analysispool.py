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

The pool is also where hostile input is contained. When a batch's child
dies (a crash in a parser, the kernel's out-of-memory kill) or is not done
within `[bot] analysis_timeout_seconds` (then it is killed), the message it
was on, which each child writes to a board in shared memory, gets an
`AnalysisAborted` error, and the rest of the batch is analysed again without
it; if the board cannot tell (a child that died between messages), the batch
is analysed one message at a time. The aborted message is recorded and
retried like any failure, and never parsed in the worker, where it would
take the worker down or stall all mail behind it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from bot.config import Config
from bot.errors import AnalysisAborted
from bot.service.analysis import Analysis, analyze
from bot.service.analysischild import (
    MIB,
    Analyse,
    Stored,
    _analyse_in_child,
    _Answer,
    _Board,
    _ready,
    _start_child,
    lifted_parts_attached,
)
from bot.service.childexits import _died, _how_ended, _reaped

# Callers import the stored-message type and MIB from here, as before the child had its module.
__all__ = ["MIB", "AnalysisPool", "PendingAnalysis", "Stored"]

log = logging.getLogger("rootnotify.analysispool")


# How long `close` lets a child finish the message it is parsing.
CLOSE_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class _Children:
    """One executor's children: their board, and the executor's table of them.

    A batch keeps the children it was handed to. When one of them dies, the
    worker may hand the next batch over before it reads this one's answer;
    the pool then starts new children, with a new board, and only these
    tell which message the dead child was on.
    """

    board: _Board
    # The executor's own dict, filled as it starts children; kept by reference
    # because the executor lets go of it at shutdown.
    table: dict[int, multiprocessing.process.BaseProcess]
    # The pids we killed: for a sibling's hang, or at close. Their SIGKILL is
    # ours, not the kernel's, and blames no message they were on.
    killed: set[int] = field(default_factory=set)

    def processes(self) -> list[multiprocessing.process.BaseProcess]:
        return list(self.table.values())

    def kill(self) -> None:
        """Kill every child outright: one is stuck in a parse that does not end."""
        for process in self.processes():
            if process.is_alive():
                self.killed.add(process.pid)
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.kill(process.pid, signal.SIGKILL)


class PendingAnalysis:
    """A batch handed to the pool; `results` waits for it."""

    def __init__(self, pool: AnalysisPool, batch: Sequence[Stored],
                 handed: tuple[Future[_Answer], _Children] | None
                 ) -> None:
        self.pool = pool
        self.batch = list(batch)
        self._future, self._children = handed or (None, None)

    def done(self) -> bool:
        """Whether the answer is in (`results` will not wait): analysed, or failed."""
        return self._future is None or self._future.done()

    def results(self) -> dict[int, Analysis | AnalysisAborted]:
        """inbound id → the pool's Analysis, or why parsing it was aborted.

        A message missing from the answer is the worker's to analyse: its
        analysis raised in the child (the worker records the error with its
        traceback), or the pool failed for a reason not the message's own.
        """
        if self._future is None or self._children is None:
            return {}
        try:
            # The batch before this one was answered already, so from here the
            # child has been on this batch at least as long as we wait.
            answer = self._future.result(timeout=self.pool.timeout)
        except (BrokenProcessPool, CancelledError):  # cancelled: the pool was closed for
            # an earlier batch's culprit, and this batch may hold one too
            log.warning("an analysis process died during a batch of %d", len(self.batch))
            return self.pool.recover(self.batch, died=True, children=self._children)
        except TimeoutError:
            log.warning("a batch of %d was not analysed within %g s", len(self.batch),
                        self.pool.timeout)
            return self.pool.recover(self.batch, died=False, children=self._children)
        except Exception as exc:  # e.g. an Analysis that would not pickle
            log.warning("the analysis pool failed a batch (%s: %s); analysing it in the "
                        "worker", type(exc).__name__, exc)
            return {}
        return self.pool.answered(answer, self.batch)


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
        self._children: _Children | None = None  # the current executor's
        self.analysed = 0  # messages whose analysis came from a child
        self.aborted = 0  # messages that killed or hung their child
        self.recycled = 0  # times the children were replaced for their size
        self.peak_rss = 0  # the largest peak any child reported, bytes
        self.recycle_rss = config.bot.analysis_recycle_rss * MIB
        self._retired: list[_Children] = []  # replaced children, finishing what they hold
        self._pids: set[int] = set()  # the children of the current executor that answered

    def submit(self, batch: Sequence[Stored]) -> PendingAnalysis:
        """Start analysing `batch` in a child; `results` of what this returns waits for it."""
        if not batch:
            return PendingAnalysis(self, [], None)
        return PendingAnalysis(self, batch, self._submit(list(batch)))

    def _submit(self, batch: list[Stored]) -> tuple[Future[_Answer], _Children]:
        """The future of `batch`'s answer, and the children it was handed to."""
        try:
            future = self._pool().submit(_analyse_in_child, batch)
        except (BrokenProcessPool, RuntimeError) as exc:  # a child died since: start again
            log.warning("analysis pool broken (%s); starting it again", exc)
            self.close()
            future = self._pool().submit(_analyse_in_child, batch)
        assert self._children is not None
        return future, self._children

    def answered(self, answer: _Answer, batch: Sequence[Stored]
                 ) -> dict[int, Analysis | AnalysisAborted]:
        found: dict[int, Analysis | AnalysisAborted] = {}
        for item, result in zip(batch, answer.results, strict=True):
            if isinstance(result, str):
                found[item.inbound_id] = self._aborted(item, result)
            elif result is not None:
                lifted_parts_attached(result, item.raw)
                found[item.inbound_id] = result
                self.analysed += 1
        self.peak_rss = max(self.peak_rss, answer.peak_rss)
        self._pids.add(answer.pid)
        # Its peak, not its size now: what a parse freed may stay mapped (CPython's
        # arenas, malloc's heap), and a process that grew once has room to grow again.
        if answer.peak_rss > self.recycle_rss:
            self.retire(answer)
        return found

    def retire(self, answer: _Answer) -> None:
        """Replace the children after a message left one large: the next batch goes to new
        ones, while the old finish what they were handed (nothing in flight is cut)."""
        log.info("analysis process %d grew to %d MiB (now %d MiB; over %d MiB): replacing it",
                 answer.pid, answer.peak_rss // MIB, answer.rss // MIB, self.recycle_rss // MIB)
        self.recycled += 1
        self._retired = [c for c in self._retired if any(p.is_alive() for p in c.processes())]
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=False)
            if self._children is not None:
                self._retired.append(self._children)
            self._executor = None
            self._children = None
        self._end_retired()

    def _end_retired(self) -> None:
        """End the children replaced for their size (idle by now, or stuck); forget the pids."""
        for retired in self._retired:
            for process in retired.processes():
                process.join(CLOSE_GRACE_SECONDS)
            retired.kill()
        self._retired = []
        self._pids = set()

    def recover(self, batch: Sequence[Stored], died: bool, children: _Children
                ) -> dict[int, Analysis | AnalysisAborted]:
        """After `batch`'s child (one of `children`) died (`died`) or hung: abort the
        message it was on and analyse the rest again; one at a time if the board does
        not say which it was."""
        found: dict[int, Analysis | AnalysisAborted] = {}
        left = list(batch)
        while left:
            culprits = self._culprits(left, died, children)
            children.kill()  # a hung child; no one left half-way
            # Also the children the next batch went to, if that was after this
            # batch's child died: a fresh pool times what is parsed again from
            # its start, not from behind a batch already in it.
            self.close()
            if not culprits:
                found.update(self.one_at_a_time(left))
                return found
            found.update(culprits)
            left = [item for item in left if item.inbound_id not in culprits]
            if not left or not self.start():
                return found  # what is left the worker parses, as with no pool
            future, children = self._submit(left)
            try:
                answer = future.result(timeout=self.timeout)
            except BrokenProcessPool:
                died = True
            except TimeoutError:
                died = False
            except Exception as exc:  # not the messages' fault: the worker parses them
                log.warning("the analysis pool failed a batch (%s: %s); analysing it in the "
                            "worker", type(exc).__name__, exc)
                return found
            else:
                found.update(self.answered(answer, left))
                return found
        return found

    def _culprits(self, batch: Sequence[Stored], died: bool, children: _Children
                  ) -> dict[int, AnalysisAborted]:
        """The messages of `batch` a dead or hung child of `children` was on, by its board."""
        ours = {item.inbound_id: item for item in batch}
        ended = {process.pid: process for process in children.processes()}
        culprits: dict[int, AnalysisAborted] = {}
        for pid, inbound_id in children.board.on().items():
            item = ours.get(inbound_id)
            if item is None:
                continue  # a child busy with another batch
            if not died:
                culprits[inbound_id] = self._aborted(item, self._hung())
                continue
            if pid in children.killed:
                continue
            how = _how_ended(_reaped(ended.get(pid)))
            if how is None and self.processes == 1:
                # The only child is the one that died, whatever its exit code says.
                how = "ended abruptly"
            if how is not None:  # siblings the pool terminated after it are not culprits
                culprits[inbound_id] = self._aborted(item, _died(how))
        return culprits

    def one_at_a_time(self, batch: Sequence[Stored]) -> dict[int, Analysis | AnalysisAborted]:
        """Analyse each message of `batch` alone, so that one that kills or hangs its
        child is known, recorded as aborted, and costs no other message anything."""
        found: dict[int, Analysis | AnalysisAborted] = {}
        for done, item in enumerate(batch):
            # A child that cannot even start is no message's fault: then the
            # worker parses what is left, as with no pool at all.
            if self._executor is None and not self.start():
                log.error("analysis processes do not start; the worker parses the %d "
                          "message(s) left of this batch itself", len(batch) - done)
                break
            future, _children = self._submit([item])
            try:
                answer = future.result(timeout=self.timeout)
            except BrokenProcessPool:
                found[item.inbound_id] = self._aborted(item, _died(self._how_children_ended()))
                self.close()
            except TimeoutError:
                self.kill()
                found[item.inbound_id] = self._aborted(item, self._hung())
                self.close()
            except Exception as exc:  # not the message's fault: the worker analyses it
                log.warning("the analysis pool failed message %d (%s: %s); analysing it in "
                            "the worker", item.inbound_id, type(exc).__name__, exc)
            else:
                found.update(self.answered(answer, [item]))
        return found

    def _hung(self) -> str:
        return f"parsing it did not end within {self.timeout:g} s; its process was killed"

    def _aborted(self, item: Stored, why: str) -> AnalysisAborted:
        log.error("message %d: %s", item.inbound_id, why)
        self.aborted += 1
        return AnalysisAborted(why)

    def kill(self) -> None:
        """Kill the current children outright: one is stuck in a parse that does not end."""
        if self._children is not None:
            self._children.kill()

    def _processes(self) -> list[multiprocessing.process.BaseProcess]:
        return self._children.processes() if self._children is not None else []

    def _how_children_ended(self) -> str:
        for process in self._processes():
            how = _how_ended(_reaped(process))
            if how is not None:
                return how
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
            board = _Board(self.processes)
            self._executor = ProcessPoolExecutor(
                max_workers=self.processes, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_child, initargs=(self.config_path, self._analyse, board))
            # ProcessPoolExecutor neither kills a stuck child nor tells how one
            # ended (before Python 3.14); its process table is the only way to both.
            self._children = _Children(board, self._executor._processes)  # type: ignore[attr-defined]
        return self._executor

    def child_pids(self) -> list[int]:
        """The children of the running pool that have answered (for tests and logs)."""
        return sorted(self._pids)

    def close(self) -> None:
        """Stop the children: at once when idle, after `CLOSE_GRACE_SECONDS` when stuck."""
        if self._executor is not None:
            processes = self._processes()
            self._executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:  # an idle child ends at once
                process.join(CLOSE_GRACE_SECONDS)
            self.kill()
            # shutdown(wait=False) let go of the pool's thread that would wait
            # for them: a killed child is gone before close returns.
            for process in processes:
                process.join(CLOSE_GRACE_SECONDS)
            self._executor = None
            self._children = None
        self._end_retired()
