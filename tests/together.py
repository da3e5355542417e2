"""Processes that open one database at the same moment, as `serve`'s do at start.

Each process imports rootnotify, says it is ready and waits on its stdin; the
test lets them all go at once when every one is ready, so that they reach the
database together instead of one interpreter start (~1 s) apart.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

OPEN_WHEN_TOLD = """
import sys
from storage import migrate
from storage.db import open_database
print("ready", flush=True)
sys.stdin.readline()
open_database(sys.argv[1]).dispose()
print(migrate.head())
"""


def open_together(url: str, count: int = 3, meanwhile: Callable[[], None] = lambda: None
                  ) -> list[tuple[int, str, str]]:
    """Each process's exit code, what it printed after opening, and its stderr.

    `meanwhile` runs once they are let go, before waiting for them to end.
    """
    starts = [subprocess.Popen([sys.executable, "-c", OPEN_WHEN_TOLD, url], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
              for _ in range(count)]
    readiness, results = release_together(starts, timeout=60, meanwhile=meanwhile)
    assert readiness == ["ready\n"] * count, [err for _out, err in results]
    return [(process.returncode, out.strip(), err)
            for process, (out, err) in zip(starts, results, strict=True)]


def release_together(processes: list[subprocess.Popen[str]], timeout: float,
                     meanwhile: Callable[[], None] = lambda: None
                     ) -> tuple[list[str], list[tuple[str, str]]]:
    """Each process's first line, then "go" to all of them at once, and their (stdout, stderr).

    Every process still running when this returns or fails is killed.
    """
    try:
        readiness = [process.stdout.readline() for process in processes]  # type: ignore[union-attr]
        for process in processes:
            process.stdin.write("go\n")  # type: ignore[union-attr]
            process.stdin.flush()  # type: ignore[union-attr]
        meanwhile()
        results = [process.communicate(timeout=timeout) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return readiness, results
