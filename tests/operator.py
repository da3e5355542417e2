"""Running `rootnotify` as an operator types it: a subprocess of this Python, its exit status,
its one-line errors, and no traceback ever."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

# A command that needs longer than this on a loaded 2-core machine has hung.
COMMAND_TIMEOUT_SECONDS = 120


def cli(config: Path | None, *args: str, env: dict[str, str] | None = None,
        prefix: list[str] | None = None, stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    """`rootnotify [--config CONFIG] ARGS…`; `prefix` runs it under another command."""
    command = [*(prefix or []), sys.executable, "-m", "bot.cli",
               *(["--config", str(config)] if config is not None else []), *args]
    return subprocess.run(command, capture_output=True, text=True, input=stdin,
                          timeout=COMMAND_TIMEOUT_SECONDS,
                          env={**os.environ, **(env or {})})


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """The command succeeded (exit 0, no traceback); else fail showing its output."""
    assert result.returncode == 0 and "Traceback" not in result.stderr, (
        f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def fails_with(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The command failed with `code` and one `rootnotify:` line holding `words`; that line."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, f"exit {result.returncode}, not {code}:\n{result.stderr}"
    lines = [line for line in result.stderr.splitlines() if line.startswith("rootnotify: ")]
    assert len(lines) == 1, result.stderr
    assert "internal error" not in lines[0], lines[0]  # expected, so said as such
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]


class Output:
    """A stream of a running process, read as it comes, so a test can wait for a line."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._stream = stream
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._stream:  # type: ignore[attr-defined]
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.lines.append("")  # end of stream
            self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = COMMAND_TIMEOUT_SECONDS) -> str:
        with self._cond:
            found = self._cond.wait_for(
                lambda: any(text in line for line in self.lines) or "" in self.lines, timeout)
            match = [line for line in self.lines if text in line]
        assert found and match, f"no line with {text!r}:\n{self.text}"
        return match[0]

    @property
    def text(self) -> str:
        with self._cond:
            return "".join(self.lines)


def read_only(folder: Path) -> list[str]:
    """A prefix that runs a command with `folder` read-only (a private read-only bind mount
    when we are root, whom file modes do not stop; else the folder's mode)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", script, "sh", str(folder)]
