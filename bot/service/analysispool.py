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
import resource
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.config import Config, load_config
from bot.errors import AnalysisAborted
from bot.service.analysis import Analysis, analyze
from bot.trust import Trust, load_trust

log = logging.getLogger("rootnotify.analysispool")

@dataclass(frozen=True)
class Stored:
    """What analysing one stored message needs besides the configuration."""

    inbound_id: int
    raw: bytes
    received_at: datetime
    envelope_from: str | None


MIB = 1024 * 1024
# How long `close` lets a child finish the message it is parsing.
CLOSE_GRACE_SECONDS = 5.0
# Looks for a dead child's exit code (see `_reaped`), and the wait in each:
# up to 5 s, since on a loaded 2-core host 2 s once passed before the pool's
# own thread had set the code (the death was then told as "ended abruptly").
REAP_TRIES = 50
REAP_WAIT_SECONDS = 0.1
# What a child runs per message: `analyze` (a test injects one that crashes or hangs).
Analyse = Callable[..., Analysis]
# One per child process: loaded once by `_start_child`, used for every message.
_child: tuple[Config, Trust, Analyse] | None = None
# This child's place on the board: which message it is parsing (0: none).
_place: tuple[Any, int] | None = None
# `ru_maxrss` as the child started: its parent's, through fork and exec.
_inherited_peak = 0


class _Board:
    """Shared memory where each child writes its pid and the message it is on.

    When a child dies or hangs, the message it was on is the culprit: found
    without parsing the batch again one message at a time (and hanging once
    more on it).
    """

    def __init__(self, places: int) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.ids = spawn.Array("q", places, lock=False)
        self.pids = spawn.Array("q", places, lock=False)
        self.taken = spawn.Value("i", 0)

    def on(self) -> dict[int, int]:
        """pid → the inbound id that child is parsing, for the children parsing one."""
        return {self.pids[n]: self.ids[n] for n in range(len(self.ids)) if self.ids[n]}


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


def _start_child(config_path: str, analyse: Analyse, board: _Board) -> None:
    global _child, _place, _inherited_peak
    _inherited_peak = _peak_rss()
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="parent-watch",
                         daemon=True).start()
    with board.taken.get_lock():
        place = board.taken.value
        board.taken.value += 1
    board.pids[place] = os.getpid()
    _place = (board.ids, place)
    config = load_config(Path(config_path))
    _bound_memory(config.bot.analysis_memory_limit * MIB)
    _child = (config, load_trust(config), analyse)


def _bound_memory(limit: int) -> None:
    """Cap this process's address space, so a parse that balloons fails with MemoryError."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _rss() -> int:
    """This process's resident size now, in bytes (Linux /proc; 0 where there is none)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _own_peak_rss() -> int:
    """This child's own peak size, not the one it was born with.

    Linux carries `ru_maxrss` through fork and exec: a child spawned by a
    worker of 300 MiB starts with a 300 MiB "peak" while it is a tenth of
    that, and would be replaced after every batch. Until the child passes
    what it inherited, its size now is the best we know.
    """
    peak = _peak_rss()
    return peak if peak > _inherited_peak else _rss()


def _exit_with(parent_sentinel: int) -> None:
    """End this process when the worker that started it is gone.

    A ProcessPoolExecutor child holds both ends of its task queue, so a worker
    killed outright (SIGKILL, OOM) never closes it: without this the child
    would wait for work for ever, one orphan per crash.
    """
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(0)


@dataclass(frozen=True)
class _Answer:
    """A child's answer to a batch: each message's result, and how large the child is."""

    pid: int
    # Analysis; None where analysis raised (the worker runs it again, for its
    # traceback); a str where the message exhausted the memory bound (never
    # run in the worker, where it would exhaust the worker).
    results: list[Analysis | str | None]
    rss: int  # bytes resident after the batch
    peak_rss: int  # the child's peak so far


def _analyse_in_child(batch: list[Stored]) -> _Answer:
    """Analyse each message of `batch`, and say how large that left this child."""
    assert _child is not None and _place is not None, "the pool's initializer did not run"
    config, trust, analyse = _child
    ids, place = _place
    results: list[Analysis | str | None] = []
    for item in batch:
        ids[place] = item.inbound_id
        try:
            analysis = analyse(item.raw, config, trust, received_at=item.received_at,
                               envelope_from=item.envelope_from)
            _lifted_parts_detached(analysis, item.raw)
            results.append(analysis)
        except MemoryError:
            results.append(f"parsing it needed more than the {config.bot.analysis_memory_limit}"
                           f" MiB an analysis process may use ([bot] analysis_memory_limit)")
        except Exception:  # recorded by the worker, which runs it again with its traceback
            results.append(None)
    ids[place] = 0
    return _Answer(os.getpid(), results, _rss(), _own_peak_rss())


def _lifted_parts_detached(analysis: Analysis, raw: bytes) -> None:
    """Attachments still lifted out of `raw` go back as spans: the worker holds `raw` too.

    Pickled with their bytes, a 1,000,000-row list (86 MB decoded) was made,
    pickled and unpickled whole, three copies, and the ingest peaked at 1 GB.
    """
    for attachment in getattr(getattr(analysis, "message", None), "attachments", ()):
        parts = attachment.lifted_parts
        if parts is not None:
            parts.detach(raw)


def _lifted_parts_attached(analysis: Analysis, raw: bytes) -> None:
    """The worker's side of `_lifted_parts_detached`: the spans read from its `raw`."""
    for attachment in getattr(getattr(analysis, "message", None), "attachments", ()):
        parts = attachment.lifted_parts
        if parts is not None:
            parts.attach(raw)


def _reaped(process: multiprocessing.process.BaseProcess | None
            ) -> multiprocessing.process.BaseProcess | None:
    """`process`, once its exit code is known (if it has ended).

    The pool's own thread waits for its children too; when both wait at once
    one of them gets ECHILD and multiprocessing reports no exit code for that
    call, so one look is not enough.
    """
    if process is None:
        return None
    for _ in range(REAP_TRIES):
        process.join(REAP_WAIT_SECONDS)
        if process.exitcode is not None:
            break
    return process


def _how_ended(process: multiprocessing.process.BaseProcess | None) -> str | None:
    """How a child that died of its own ended; None if alive, unknown, or terminated by
    the pool (SIGTERM: what ProcessPoolExecutor does to the siblings of a dead child)."""
    code = process.exitcode if process is not None else None
    if code is None or code == -signal.SIGTERM:
        return None
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def _died(how: str) -> str:
    return f"the process parsing it died ({how})"


def _ready() -> int:
    assert _child is not None, "the pool's initializer did not run"
    return os.getpid()


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
                _lifted_parts_attached(result, item.raw)
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
