"""`rootnotify web` and `serve` with `[web] enabled`, as processes; JSON equal to the CLI's.

The database is built by the real pipeline (`rootnotify ingest`, `tick`);
the web view runs as its own command on it; staff sign in with the link
from the maildir the bot delivers to; each page's JSON must equal what the
command line prints for the same database.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.harness import (
    CA_CONTACT,
    STAFF,
    WAIT_SECONDS,
    Sink,
    eventually,
    free_port,
    write_config,
)
from tests.test_cli_and_ingest import rootnotify
from tests.test_operator_view import INCIDENT, build_scenario, staff_request
from tests.test_supervisor import ServeLog as Log
from tests.test_supervisor import _send_form
from tests.web_harness import csrf_of, web_config

# status --json fields that move with the moment of asking, not with the database.
MOMENTARY = ("checked_at", "_age_seconds")  # and a dossier's exported_at


@contextmanager
def process(config: Path, command: str) -> Iterator[Log]:
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--config", str(config), command],
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log = Log(proc)
    try:
        yield log
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT_SECONDS * 2) == 0, "".join(log.lines[-30:])
    finally:
        if proc.poll() is None:
            proc.kill()


def _link_from_maildir(folder: Path) -> str:
    for path in sorted((folder / "var" / "outbox" / "new").iterdir()):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if STAFF in str(msg["To"]) and "sign-in link" in str(msg["Subject"]):
            body = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
            return re.search(r"http\S+/login/\S+", body).group(0)  # type: ignore[union-attr]
    raise AssertionError("no sign-in link in the maildir")


def _cli_json(config: Path, *args: str) -> object:
    return json.loads(rootnotify(config, *args, check=False).stdout)


def _steady(data: dict) -> dict:
    out = {}
    for key, value in data.items():
        if any(key.endswith(m) for m in MOMENTARY):
            continue
        out[key] = _steady(value) if isinstance(value, dict) else value
    return out


def test_the_web_commands_json_equals_the_command_lines_for_the_same_database(tmp_path):
    port = free_port()
    s = build_scenario(tmp_path, extra=web_config(port))
    assert staff_request(s)  # a deadline, so next_due_at and overdue have something to say
    with process(s.config, "web") as log, \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_SECONDS) as client:
        eventually("the web view", lambda: log.saw("web view on"))
        client.post("/login", data={"csrf": csrf_of(client.get("/login").text),
                                    "address": STAFF})
        rootnotify(s.config, "tick")  # the sender of `serve`: into the maildir
        link = _link_from_maildir(s.folder)
        path = "/login/" + link.rsplit("/", 1)[1]
        client.post(path, data={"csrf": csrf_of(client.get(path).text)})

        def web(url: str) -> object:
            answer = client.get(url, headers={"Accept": "application/json"})
            assert answer.status_code == 200, (url, answer.text)
            return answer.json()

        assert web("/incidents") == _cli_json(s.config, "incidents", "--json")
        assert web("/incidents?open=1&overdue=1&ca=example%20ca") == _cli_json(
            s.config, "incidents", "--open", "--overdue", "--ca", "example ca", "--json")
        assert web(f"/incidents/{INCIDENT}") == _cli_json(s.config, "show", INCIDENT, "--json")
        assert web("/quarantine") == _cli_json(s.config, "quarantine", "--json")
        assert _steady(web("/status")) == _steady(_cli_json(s.config, "status", "--json"))
        assert web(f"/incidents/{INCIDENT}")["deadlines"][0]["kind"] == "certificate-list"
        export = client.get(f"/incidents/{INCIDENT}/export?format=json").json()
        dossier = _cli_json(s.config, "export", INCIDENT, "--format", "json")
        assert isinstance(dossier, dict) and export.pop("exported_at") and dossier.pop(
            "exported_at")
        assert export == dossier


def test_serve_runs_the_web_view_as_one_more_supervised_process(tmp_path):
    sink = Sink().start()
    smtp, web_port = free_port(), free_port()
    config = write_config(tmp_path, smtp_port=smtp, relay_port=sink.port,
                          extra=web_config(web_port))
    try:
        with process(config, "serve") as log, \
                httpx.Client(base_url=f"http://127.0.0.1:{web_port}",
                             timeout=WAIT_SECONDS) as client:
            eventually("the listener", lambda: log.saw("SMTP listening"))
            assert log.saw("web process started")
            assert client.get("/healthz").text == "ok"
            client.post("/login", data={"csrf": csrf_of(client.get("/login").text),
                                        "address": STAFF})
            # Queued by the web process, delivered by serve's sender.
            mail = sink.wait_for(sink.to(STAFF, "sign-in link"))[0]
            assert f"http://127.0.0.1:{web_port}/login/" in mail.body
            dead = log.pids["web"]
            os.kill(dead, signal.SIGKILL)
            eventually("a new web process", lambda: log.pids["web"] != dead)
            eventually("the web view again", lambda: _answers(client))
            _send_form(smtp, 1)  # intake is untouched by it
            sink.wait_for(sink.to(CA_CONTACT, "Notification received"))
    finally:
        sink.stop()


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_rootnotify_web_on_a_taken_port_says_so_in_one_line(tmp_path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = write_config(tmp_path, smtp_port=free_port(), relay_port=free_port(),
                              extra=web_config(port))
        result = rootnotify(config, "web", check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"rootnotify: web: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "Traceback" not in result.stderr
