"""How an analysis child ended, as the pool tells it: reaped, and its exit put in words."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal

# Looks for a dead child's exit code (see `_reaped`), and the wait in each:
# up to 5 s, since on a loaded 2-core host 2 s once passed before the pool's
# own thread had set the code (the death was then told as "ended abruptly").
REAP_TRIES = 50
REAP_WAIT_SECONDS = 0.1


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
