"""Runs the web view on uvicorn: alone (`rootnotify web`) or as one of `serve`'s processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from bot.clock import Clock, SystemClock
from bot.config import Config
from bot.context import make_context
from bot.operator.web.app import make_app
from storage.db import open_database

log = logging.getLogger("rootnotify.web")


class _Server(uvicorn.Server):
    """uvicorn's server without signal handlers of its own: whoever runs it says when to stop.

    uvicorn replaces SIGTERM's handler while it serves; in `serve`'s web
    process that would take the supervisor's stop away from the process.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(config: Config, clock: Clock | None = None) -> uvicorn.Server:
    ctx = make_context(config, open_database(config.storage_url), clock or SystemClock())
    # rootnotify's own logging (bot.logs) already goes to stderr; uvicorn adds
    # one access line per request there too.
    settings = uvicorn.Config(make_app(ctx), host=config.web.host, port=config.web.port,
                              log_config=None, lifespan="off", server_header=False)
    return _Server(settings)


async def serve_web(config: Config, stop: asyncio.Event, clock: Clock | None = None,
                    started: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set; set `started` once the socket listens."""
    server = make_server(config, clock)
    # Bound here, not by uvicorn: a port in use is then an OSError for the
    # caller (one line from the command line), not uvicorn's sys.exit.
    family = socket.AF_INET6 if ":" in config.web.host else socket.AF_INET
    listening = socket.create_server((config.web.host, config.web.port), family=family)
    task = asyncio.create_task(server.serve(sockets=[listening]))
    while not server.started and not task.done():
        await asyncio.sleep(0.05)  # uvicorn has no event for it, only this flag
    if task.done():
        task.result()  # the bind failed: raise it
    log.info("web view on %s (listening on %s:%s)", config.web.base_url, config.web.host,
             config.web.port)
    if started is not None:
        started.set()
    await stop.wait()
    server.should_exit = True
    await task


async def run_alone(config: Config) -> int:
    """`rootnotify web`: until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve_web(config, stop)
    return 0
