"""Who holds a lease: this process, named so that a log line or a row tells where it runs."""

from __future__ import annotations

import functools
import os
import secrets
import socket

from bot.node import NODE_ID_ENV


def lease_owner() -> str:
    """This `serve`'s node id (bot.node), host name and pid: unique per process start,
    even when a restarted `serve` gets a pid again that a dead one had on the same host.

    Starting with the node id lets `status` find the mail a dead node still holds.
    """
    # Keyed by pid: a forked child (the supervisor's sender) is another owner.
    return _owner(os.getpid())


@functools.cache
def _owner(pid: int) -> str:
    node_id = os.environ.get(NODE_ID_ENV) or secrets.token_hex(16)
    return f"{node_id}:{socket.gethostname()}:{pid}"
