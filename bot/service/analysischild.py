"""What runs in an analysis child process: its memory bound, its place on the board, each batch."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import resource
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.config import Config, load_config
from bot.service.analysis import Analysis
from bot.trust import Trust, load_trust


@dataclass(frozen=True)
class Stored:
    """What analysing one stored message needs besides the configuration."""

    inbound_id: int
    raw: bytes
    received_at: datetime
    envelope_from: str | None


MIB = 1024 * 1024


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
            lifted_parts_detached(analysis, item.raw)
            results.append(analysis)
        except MemoryError:
            results.append(f"parsing it needed more than the {config.bot.analysis_memory_limit}"
                           f" MiB an analysis process may use ([bot] analysis_memory_limit)")
        except Exception:  # recorded by the worker, which runs it again with its traceback
            results.append(None)
    ids[place] = 0
    return _Answer(os.getpid(), results, _rss(), _own_peak_rss())


def _ready() -> int:
    assert _child is not None, "the pool's initializer did not run"
    return os.getpid()


def lifted_parts_detached(analysis: Analysis, raw: bytes) -> None:
    """Attachments still lifted out of `raw` go back as spans: the worker holds `raw` too.

    Pickled with their bytes, a 1,000,000-row list (86 MB decoded) was made,
    pickled and unpickled whole, three copies, and the ingest peaked at 1 GB.
    """
    for attachment in getattr(getattr(analysis, "message", None), "attachments", ()):
        parts = attachment.lifted_parts
        if parts is not None:
            parts.detach(raw)


def lifted_parts_attached(analysis: Analysis, raw: bytes) -> None:
    """The worker's side of `lifted_parts_detached`: the spans read from its `raw`."""
    for attachment in getattr(getattr(analysis, "message", None), "attachments", ()):
        parts = attachment.lifted_parts
        if parts is not None:
            parts.attach(raw)
