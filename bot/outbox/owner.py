"""Who holds a lease: this process, named so that a log line or a row tells where it runs."""

from __future__ import annotations

import functools
import os
import secrets
import socket


def lease_owner() -> str:
    """Host name, pid and a random start id: unique per process start, even when a
    restarted `serve` gets a pid again that a dead one had on the same host."""
    # Keyed by pid: a forked child (the supervisor's sender) is another owner.
    return _owner(os.getpid())


@functools.cache
def _owner(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:{secrets.token_hex(4)}"
