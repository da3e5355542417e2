"""The command line as an operator uses it: ingest files, tick, serve until SIGTERM."""

from __future__ import annotations

import json
import mailbox
import os
import signal
import smtplib
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.harness import (
    CA_CONTACT,
    COMPLETE_FORM,
    WAIT_SECONDS,
    Sink,
    free_port,
    make_mail,
    write_config,
)


def rootnotify(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "bot.cli", "--config", str(config), *args],
                            capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"rootnotify {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def received_header(at: str) -> str:
    return f"from mx.exampleca.test by mx.program.test; {at}"


@pytest.fixture
def maildir_config(tmp_path: Path) -> Path:
    return write_config(tmp_path, smtp_port=free_port(), relay_port=free_port(),
                        outgoing_mode="maildir")


def test_ingest_eml_mbox_and_maildir_then_tick_delivers_to_the_maildir(tmp_path, maildir_config):
    eml = tmp_path / "one.eml"
    eml.write_bytes(make_mail(CA_CONTACT, "notification", COMPLETE_FORM,
                              headers={"Received": received_header(
                                  "Thu, 26 Nov 2026 13:00:00 +0000")}))
    box = mailbox.mbox(tmp_path / "mail.mbox")
    box.add(make_mail(CA_CONTACT, "a question", "hello"))
    box.add(make_mail("stranger@nowhere.test", "hi", "hello"))
    box.flush()
    md = mailbox.Maildir(tmp_path / "md", create=True)
    md.add(make_mail(CA_CONTACT, "another question", "hello again"))

    out = rootnotify(maildir_config, "ingest", str(eml), str(tmp_path / "mail.mbox"),
                     str(tmp_path / "md"))
    assert "4 stored, 0 duplicate(s), 0 refused; 4 processed" in out.stdout

    # The notification time is the newest Received: stamp, not the time of ingest.
    rows = json.loads(rootnotify(maildir_config, "incidents", "--json").stdout)
    assert [(r["id"], r["notified_at"]) for r in rows] == [
        ("INC-2026-0001", "2026-11-26T13:00:00+00:00")]
    again = rootnotify(maildir_config, "ingest", str(eml))
    assert "0 stored, 1 duplicate(s)" in again.stdout

    rootnotify(maildir_config, "tick")
    delivered = mailbox.Maildir(tmp_path / "var" / "outbox", create=False)
    subjects = sorted(str(m["Subject"]) for m in delivered)
    assert subjects.count(
        "[INC-2026-0001] Notification received (mis-issuance)") == 1, subjects
    assert sum("notification form" in s for s in subjects) == 2
    assert sum("New incident" in s for s in subjects) == 1


def test_ingest_refuses_oversized_files(tmp_path, maildir_config):
    big = tmp_path / "big.eml"
    big.write_bytes(make_mail(CA_CONTACT, "big", "x" * 2_000_000))
    result = rootnotify(maildir_config, "ingest", str(big), check=False)
    assert result.returncode == 1
    assert "exceeds max_message_size" in result.stderr


def test_a_wrong_key_is_one_line_naming_key_and_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[bot]\naddress = "rootnotify@program.test"\nrulset = "2019-03"\n'
                    '[outgoing]\nfrom = "x <rootnotify@program.test>"\n')
    result = rootnotify(path, "check-config", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0] and "[bot] rulset" in lines[0] and "unknown key" in lines[0]


def test_missing_required_key_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[bot]\naddress = "rootnotify@program.test"\n')
    result = rootnotify(path, "incidents", check=False)
    assert result.returncode == 2
    assert "[outgoing] from: missing required key" in result.stderr


def test_tick_rejects_a_time_without_zone(maildir_config):
    result = rootnotify(maildir_config, "tick", "--now", "2026-11-26T13:05:00", check=False)
    assert result.returncode == 2 and "no time zone" in result.stderr


def test_serve_takes_mail_relays_the_acknowledgement_and_stops_cleanly_on_sigterm(tmp_path):
    sink = Sink().start()
    port = free_port()
    config = write_config(tmp_path, smtp_port=port, relay_port=sink.port)
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--config", str(config), "serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait for the listener's own word that it listens
            if "SMTP listening" in line:
                break
        with smtplib.SMTP("127.0.0.1", port, timeout=WAIT_SECONDS) as smtp:
            smtp.sendmail(CA_CONTACT, ["rootnotify@program.test"],
                          make_mail(CA_CONTACT, "incident", COMPLETE_FORM,
                                    date=datetime.now(UTC)))
        ack = sink.wait_for(sink.to(CA_CONTACT, "Notification received"))[0]
        assert ack.subject.startswith("[INC-")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT_SECONDS) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sink.stop()
