"""`rootnotify serve` as three processes: a worker or a sender that dies is started again,
and mail goes on being acknowledged."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import smtplib
import subprocess
import sys
import threading
from datetime import UTC, datetime

from bot.service.supervisor import _Child
from tests.harness import (
    BOT,
    CA_CONTACT,
    WAIT_SECONDS,
    Sink,
    eventually,
    free_port,
    make_mail,
    numbered_form,
    write_config,
)

STARTED = re.compile(r"(worker|sender|web) process started \(pid (\d+)\)")


class ServeLog:
    """`serve`'s stderr, read as it comes, with the pid of each child as last started."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.pids: dict[str, int] = {}
        assert proc.stderr is not None
        self._stream = proc.stderr
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._stream:
            if found := STARTED.search(line):
                self.pids[found.group(1)] = int(found.group(2))
            self.lines.append(line)

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)


def _send_form(port: int, n: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=WAIT_SECONDS) as smtp:
        smtp.sendmail(CA_CONTACT, [BOT], make_mail(
            CA_CONTACT, f"Security incident {n}", numbered_form(n),
            message_id=f"<supervised-{n}@exampleca.test>", date=datetime.now(UTC)))


def test_a_dead_worker_or_sender_is_restarted_and_mail_still_gets_its_answer(tmp_path):
    sink = Sink().start()
    port = free_port()
    config = write_config(tmp_path, smtp_port=port, relay_port=sink.port)
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--config", str(config), "serve"],
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log = ServeLog(proc)
    try:
        eventually("the listener", lambda: log.saw("SMTP listening"))
        # The listener opens once both children said they are ready.
        assert log.saw("worker started") and log.saw("sender started")
        for n, role in enumerate(("sender", "worker"), start=1):
            dead = log.pids[role]
            os.kill(dead, signal.SIGKILL)
            eventually(f"a new {role}", lambda role=role, dead=dead: log.pids[role] != dead)
            _send_form(port, n)  # stored by the listener whatever the children do
            acks = sink.wait_for(sink.to(CA_CONTACT, "Notification received"), count=n)
            assert len(acks) == n
            assert log.saw(f"{role} process exited with -9; restarting it")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT_SECONDS) == 0, "".join(log.lines[-30:])
    finally:
        if proc.poll() is None:
            proc.kill()
        sink.stop()


def _ends_at_once() -> None:
    """A child that has nothing to do (module-level: the child imports it by name)."""


def test_a_child_that_ended_is_never_taken_for_alive_while_its_watcher_waits_too():
    """`stop` waits for a child while `watch` is waiting for it too. Each waits in a
    thread; a child that ended cleanly must read as ended to `stop`, whichever
    thread's wait took its exit status (under load, a clean stop was once taken
    for a hang and `serve` exited 1)."""
    mp = multiprocessing.get_context("fork")  # the race is in the waiting, not the start
    child = _Child(None, "worker")  # type: ignore[arg-type]  # the supervisor is not used
    taken_for_alive = 0
    for _ in range(100):
        process = mp.Process(target=_ends_at_once)
        process.start()
        watcher = threading.Thread(target=child._join, args=(process,))
        watcher.start()
        child._join(process, WAIT_SECONDS)
        taken_for_alive += process.is_alive()
        watcher.join()
        assert process.exitcode == 0
    assert taken_for_alive == 0
