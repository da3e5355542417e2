"""What every `rootnotify` command shares: the app, the global options, config and context.

The commands live in `bot.cli` (intake, scheduler, views) and
`bot.climessages` (stored messages and the quarantine); both register on
`app` here. Errors a command expects are raised as `OperatorError` or
`ConfigError` and become one line in `bot.cli.main`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from bot.clock import Clock, SystemClock
from bot.config import Config, config_path, load_config
from bot.context import Context, make_context
from bot.errors import OperatorError
from bot.logs import setup_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="rootnotify: the bot behind a root program's security-incident mailbox."
                  "\n\nExamples:\n\n  rootnotify --config /etc/rootnotify/config.toml serve"
                  "\n\n  rootnotify incidents --open\n\n  rootnotify show INC-2026-0001"
                  "\n\n  rootnotify export INC-2026-0001 -o dossier.md"
                  "\n\nExit status: 0 done; 1 something failed or needs a person; "
                  "2 a wrong command line or configuration.")
console = Console()
err = Console(stderr=True)
# Width of tables written to a pipe or file, where no terminal says how wide to be.
PIPED_TABLE_WIDTH = 160


class State:
    config_option: str | None = None
    log_json: bool = False
    log_level: int = logging.INFO
    verbose: bool = False


state = State()


@app.callback()
def main_options(
    config: Annotated[str | None, typer.Option("--config", metavar="PATH",
                                               help="Path of the TOML configuration "
                                               "(else $ROOTNOTIFY_CONFIG, else ./config.toml)")]
    = None,
    log_json: Annotated[bool, typer.Option("--log-json", help="Log JSON lines")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail "
                                          "(and the traceback of an internal error)")] = False,
) -> None:
    state.config_option = config
    state.log_json = log_json
    state.verbose = verbose
    state.log_level = logging.DEBUG if verbose else logging.INFO
    setup_logging(json_lines=log_json, level=state.log_level)


def load() -> Config:
    """The configuration (a ConfigError becomes one line and exit 2 in `bot.cli.main`)."""
    return load_config(config_path(state.config_option))


def writable_data_dir(config: Config) -> None:
    """Refuse, in one line, a data_dir that cannot be written (SQLite writes even to read)."""
    path = config.bot.data_dir
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OperatorError(f"data_dir {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK):
        why = "read-only file system" if _read_only_fs(probe) else "permission denied"
        raise OperatorError(f"data_dir {path} is not writable ({why}); rootnotify keeps its "
                            "database and spool there, and needs to write even to read them")


def _read_only_fs(path: Any) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def context(clock: Clock | None = None) -> Context:
    """Config, the database (brought to this version's schema) and the rest, for a command."""
    from storage.db import open_database

    config = load()
    if config.storage_url.startswith("sqlite"):
        writable_data_dir(config)
    db = open_database(config.storage_url)
    return make_context(config, db, clock or SystemClock())


def error(text: str, prefix: bool = True) -> None:
    """One plain line on stderr (no wrapping: scripts and people grep these)."""
    sys.stderr.write(f"{'rootnotify: ' if prefix else ''}{text}\n")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def table_console() -> Console:
    """The console for a table: piped into grep or a mail, one row a line."""
    return console if console.is_terminal else Console(width=PIPED_TABLE_WIDTH)
