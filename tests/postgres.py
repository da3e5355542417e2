"""A real PostgreSQL server on loopback for the tests: a throwaway cluster, one database a test.

`[storage] url` takes any SQLAlchemy URL and the README offers PostgreSQL;
these fixtures let tests hold that promise against a real server. The
cluster is made with `initdb` (trust authentication, fsync off: it is thrown
away) under the system temp dir and started once per session on a free
127.0.0.1 port; each test gets a database of its own. As root (a container)
the server runs as the `postgres` user Debian's package creates, since
PostgreSQL refuses to run as root. Where PostgreSQL or psycopg is missing
the tests are skipped with the reason; with `CI=true` (CI installs both) they fail.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import free_port

BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
START_TIMEOUT_SECONDS = 30.0
CONNECT_RETRY_SECONDS = 0.1


@dataclass
class Postgres:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                               dbname="postgres", autocommit=True)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "log").read_text(errors="replace")[-2000:]
        return ""


def _as_server_user(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.getuid() == 0 else args


def _unavailable() -> str | None:
    if not BINARIES:
        return "PostgreSQL is not installed (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    if os.getuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root needs the postgres user (made by Debian's package)"
    return None


def _start(root: Path) -> Postgres:
    binaries = BINARIES[0]
    if os.getuid() == 0:
        server_user = pwd.getpwnam("postgres")
        os.chown(root, server_user.pw_uid, server_user.pw_gid)
    subprocess.run(_as_server_user([str(binaries / "initdb"), "-D", str(root / "data"),
                                    "--auth=trust", "-U", "postgres", "--no-sync"]),
                   check=True, capture_output=True)
    port = free_port()
    with open(root / "log", "wb") as log:
        process = subprocess.Popen(
            _as_server_user([str(binaries / "postgres"), "-D", str(root / "data"),
                             "-p", str(port), "-h", "127.0.0.1", "-k", str(root),
                             "-c", "fsync=off", "-c", "max_connections=200"]),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Postgres(root, port, process)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:  # readiness by connecting, not by sleeping
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited {process.returncode}: {server.log_tail()}")
        try:
            server.admin().close()
            return server
        except Exception:
            time.sleep(CONNECT_RETRY_SECONDS)
    process.kill()
    raise RuntimeError(f"postgres did not answer in {START_TIMEOUT_SECONDS}s: "
                       f"{server.log_tail()}")


def _cannot_run(reason: str) -> None:
    """Skip where PostgreSQL is missing; in CI (`CI=true`), which installs it, fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session", name="postgres_server")
def postgres_cluster() -> Iterator[Postgres]:
    reason = _unavailable()
    if reason:
        _cannot_run(reason)
    root = Path(tempfile.mkdtemp(prefix="rootnotify-postgres-"))
    try:
        server = _start(root)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        _cannot_run(f"PostgreSQL could not be started here: {exc}")
    try:
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(name="postgres_url")
def postgres_database(postgres_server: Postgres) -> Iterator[str]:
    """The URL of a new, empty database for this test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with postgres_server.admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.url(name)
    with postgres_server.admin() as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
