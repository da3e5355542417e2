"""Issue 19, points 6, 7 and 8: check-config changes nothing, lists every problem with the
documented codes; the IMAP password is asked for only where IMAP is logged in to; the systemd
unit and the documented configuration work together."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import WAIT_SECONDS, free_port, write_config
from tests.operator import cli, fails_with, ok


def test_check_config_lists_every_missing_file_changes_nothing_and_exits_1(tmp_path):
    config = write_config(tmp_path, smtp_port=free_port(), relay_port=free_port(), extra="""
smime_anchors = ["cas/other-anchor.pem"]
roots = ["cas/other-root.pem"]
""")
    config.write_text(config.read_text().replace(
        'auth = "none"', 'auth = "smime"\ncertificates = ["staff/alice.pem"]'))
    result = cli(config, "check-config")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    problems = [line for line in result.stderr.splitlines()
                if line.startswith("rootnotify: ") and "warning:" not in line]
    assert sorted(problems) == sorted([
        f"rootnotify: {config}: [ca #2] smime_anchors: file 'cas/other-anchor.pem' not found "
        f"({tmp_path / 'cas/other-anchor.pem'})",
        f"rootnotify: {config}: [ca #2] roots: file 'cas/other-root.pem' not found "
        f"({tmp_path / 'cas/other-root.pem'})",
        f"rootnotify: {config}: [staff] certificates: file 'staff/alice.pem' not found "
        f"({tmp_path / 'staff/alice.pem'})",
    ])
    # The relay is down: a warning, not a problem (its outage must not stop intake).
    assert any(line.startswith("rootnotify: warning: [outgoing] relay: ")
               and "serve keeps trying" in line for line in result.stderr.splitlines())
    assert "3 problem(s), 1 warning(s)" in result.stdout
    # Read-only: neither the data folder nor the database was made.
    assert not (tmp_path / "var").exists()


def test_check_config_warns_that_auth_none_lets_forged_staff_mail_command(tmp_path):
    config = write_config(tmp_path, smtp_port=free_port(), relay_port=free_port(),
                          outgoing_mode="maildir")
    result = ok(cli(config, "check-config"))
    assert result.stderr.splitlines() == [
        "rootnotify: warning: [staff] auth is none: anyone who forges a staff address in "
        "From can command the bot (set smime or dkim)"]
    assert "configuration is valid (0 problem(s), 1 warning(s))" in result.stdout
    assert "ok: database" in result.stdout and "not made yet; serve makes it" in result.stdout
    assert not (tmp_path / "var").exists()


def test_a_wrong_value_in_the_file_itself_is_exit_2(tmp_path):
    config = write_config(tmp_path, smtp_port=free_port(), relay_port=free_port(),
                          outgoing_mode="maildir")
    config.write_text(config.read_text().replace('ruleset = "2019-03"', 'ruleset = "2018"'))
    fails_with(cli(config, "check-config"), 2, "[bot] ruleset", "'2018' is not one of")


def test_read_only_commands_run_without_the_imap_password(tmp_path):
    config = write_config(tmp_path, smtp_port=free_port(), relay_port=free_port(),
                          outgoing_mode="maildir",
                          imap=f"enabled = true\nport = {free_port()}\nssl = false")
    no_password = {"ROOTNOTIFY_IMAP_PASSWORD": ""}
    assert json.loads(ok(cli(config, "incidents", "--json", env=no_password)).stdout) == []
    assert ok(cli(config, "quarantine", env=no_password)).stdout == "quarantine is empty\n"
    status = cli(config, "status", "--json", env=no_password)
    assert "Traceback" not in status.stderr and json.loads(status.stdout)["imap_enabled"]
    # What logs in to IMAP needs it: serve stops at once, check-config lists it.
    fails_with(cli(config, "serve", env=no_password), 2,
               "[imap] password_env: environment variable 'ROOTNOTIFY_IMAP_PASSWORD' is not set")
    checked = cli(config, "check-config", env=no_password)
    assert checked.returncode == 1
    assert ("rootnotify: [imap] password_env: environment variable 'ROOTNOTIFY_IMAP_PASSWORD' "
            "is not set") in checked.stderr.splitlines()


# --- point 6: the systemd unit and its documented configuration, in a temp root -------------

CONTRIB = Path(__file__).parents[1] / "contrib"


def _unit(name: str) -> dict[str, list[str]]:
    """The unit's `Key=value` lines (a key may repeat), comments and sections left out."""
    keys: dict[str, list[str]] = {}
    for line in (CONTRIB / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            keys.setdefault(key, []).append(value)
    return keys


def test_the_units_exec_lines_run_against_the_documented_config_in_a_read_only_etc(tmp_path):
    from tests.operator import Output, read_only
    from tests.smime_factory import make_ca, pem

    unit = _unit("rootnotify.service")
    etc, state = tmp_path / "etc/rootnotify", tmp_path / "var/lib/rootnotify"
    (etc / "staff").mkdir(parents=True)
    state.mkdir(parents=True)  # StateDirectory= makes it, owned by the service's user
    port = free_port()
    relocate = {"/etc/rootnotify": str(etc), "/var/lib/rootnotify": str(state)}
    text = (CONTRIB / "rootnotify.toml").read_text().replace("port = 8025", f"port = {port}")
    for real, here in relocate.items():
        text = text.replace(real, here)
    (etc / "config.toml").write_text(text)
    (etc / "staff/staff-ca.pem").write_bytes(pem(make_ca("Program Staff CA", slot=1).cert))

    env = dict(v.split("=", 1) for v in unit["Environment"])
    for real, here in relocate.items():
        env = {k: v.replace(real, here) for k, v in env.items()}
    assert env == {"ROOTNOTIFY_CONFIG": str(etc / "config.toml")}
    assert unit["ReadWritePaths"] == ["/var/lib/rootnotify"]
    assert unit["WorkingDirectory"] == ["/var/lib/rootnotify"]
    assert unit["KillMode"] == ["mixed"] and unit["KillSignal"] == ["SIGTERM"]
    binary = "/opt/rootnotify/venv/bin/rootnotify"
    (pre,), (start,) = unit["ExecStartPre"], unit["ExecStart"]
    assert pre.startswith(binary) and start.startswith(binary)

    # ProtectSystem=strict: everything but ReadWritePaths is read-only; here, /etc.
    prefix = read_only(etc)
    # ExecStartPre: the relay (Postfix) is down, which only warns.
    checked = cli(None, *pre[len(binary):].split(), env=env, prefix=prefix)
    if checked.returncode != 0 and "mount" in checked.stderr:
        pytest.skip("no read-only bind mount here")
    assert checked.returncode == 0, checked.stderr
    assert "rootnotify: warning: [outgoing] relay" in checked.stderr
    # ExecStart: serve starts, listens, and stops on SIGTERM with 0.
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "bot.cli",
                             *start[len(binary):].split()],
                            cwd=state, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = Output(proc.stderr)
    try:
        err.wait_for("SMTP listening")
        with smtplib.SMTP("127.0.0.1", port, timeout=WAIT_SECONDS) as smtp:
            smtp.noop()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT_SECONDS * 3) == 0, err.text
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (state / "rootnotify.db").is_file()
    assert "Traceback" not in err.text


# --- point 13: the README's template reference is the templates' own --------------------

def test_the_readme_lists_every_template_with_exactly_its_variables():
    import re

    import jinja2.meta

    from bot.outbox.render import Renderer, packaged_templates_dir

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    listed = {m.group(1): {v for v in re.findall(r"`([a-z_]+)`", m.group(2))}
              for m in re.finditer(r"^\| `([a-z-]+\.txt\.j2)` \| [^|]+ \| (.*) \|$", readme,
                                   re.MULTILINE)}
    env = Renderer(None).env
    actual = {p.name: jinja2.meta.find_undeclared_variables(env.parse(p.read_text()))
              for p in sorted(packaged_templates_dir().glob("*.j2"))}
    assert listed == actual
