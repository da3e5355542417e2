"""A real Dovecot IMAP server on loopback for the tests: throwaway config, maildir, TLS.

The `dovecot` fixture starts `/usr/sbin/dovecot -F` with a configuration
written under `tmp_path`: one user in a passwd-file with a plain password, a
maildir under `tmp_path`, an IMAPS listener (TLS on connect) and a plain
listener for STARTTLS, both on free 127.0.0.1 ports, and a self-signed
certificate made with cryptography. Nothing system-wide is touched; Dovecot
runs as the current user (root in a container is allowed with
`first_valid_uid = 0`). Readiness is awaited by connecting, never by sleeping.
If Dovecot is missing or will not start, the tests that use it are skipped
with the reason (CI installs `dovecot-imapd`, so there they run).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import grp
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from imapclient import IMAPClient

from tests.harness import free_port

DOVECOT = "/usr/sbin/dovecot"
USER = "rootnotify"
PASSWORD = "s3cret-imap"
# How long Dovecot may take to accept its first connection; a few hundred ms
# on a laptop, more on a loaded CI machine. Waiting is by polling a connect.
START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0
# Between connection attempts while waiting for readiness (a socket poll, not
# a sleep standing in for readiness).
CONNECT_RETRY_SECONDS = 0.05


@dataclass(frozen=True)
class _Users:
    internal: str  # Dovecot's own processes
    group: str
    login: str  # imap-login, which refuses to run as root
    me: str  # the test's user: the master, and auth (it reads the passwd-file)
    mail_uid: int  # the mailbox owner
    mail_gid: int


def _service_users() -> _Users:
    """Who runs what. As an ordinary user, that user runs everything.

    As root (a container), imap-login refuses to run as root and the imap
    process refuses uid 0 for mail ("userdb returned 0 as uid"), so the
    unprivileged users Debian's dovecot-core package creates take those roles:
    `dovenull` logs in, `dovecot` owns the mail.
    """
    me = pwd.getpwuid(os.getuid())
    if os.getuid() != 0:
        group = grp.getgrgid(os.getgid()).gr_name
        return _Users(me.pw_name, group, me.pw_name, me.pw_name, os.getuid(), os.getgid())
    try:
        internal = pwd.getpwnam("dovecot")
        pwd.getpwnam("dovenull")
    except KeyError as exc:
        raise RuntimeError("running as root needs the dovecot and dovenull users "
                           "(created by the dovecot-core package)") from exc
    return _Users(internal.pw_name, grp.getgrgid(internal.pw_gid).gr_name, "dovenull",
                  me.pw_name, internal.pw_uid, internal.pw_gid)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class Dovecot:
    """One Dovecot instance; can be stopped and started again on the same ports and mail."""

    root: Path
    imaps_port: int
    imap_port: int
    cert: Path
    process: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    user: str = USER
    password: str = PASSWORD

    @property
    def config_path(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    def write_config(self) -> None:
        u = _service_users()
        (self.root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n")
        for sub in ("run", "state", "home"):
            (self.root / sub).mkdir(exist_ok=True)
        if os.getuid() == 0:
            os.chown(self.root / "home", u.mail_uid, u.mail_gid)
        self.config_path.write_text(f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.log_path}
protocols = imap
listen = 127.0.0.1
default_internal_user = {u.internal}
default_internal_group = {u.group}
default_login_user = {u.login}
first_valid_uid = 0
first_valid_gid = 0
mail_uid = {u.mail_uid}
mail_gid = {u.mail_gid}
ssl = required
ssl_cert = <{self.cert}
ssl_key = <{self.cert.with_name('key.pem')}
auth_mechanisms = plain login
# Dovecot waits 2 s before answering a failed login (against guessing); the
# wrong-password test need not wait.
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/passwd
}}
userdb {{
  driver = static
  args = uid={u.mail_uid} gid={u.mail_gid} home={self.root}/home/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
# The auth process reads the passwd-file under tmp_path, which may be private
# to the user running the tests (pytest's tmp_path is mode 0700).
service auth {{
  user = {u.me}
}}
service auth-worker {{
  user = {u.me}
}}
service stats {{
  unix_listener stats-reader {{
    user = {u.internal}
  }}
  unix_listener stats-writer {{
    user = {u.internal}
  }}
}}
""")

    def start(self) -> None:
        self.write_config()
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.config_path)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if \
                    self.process.stderr else ""
                raise RuntimeError(f"dovecot exited {self.process.returncode}: {err.strip()} "
                                   f"{self._log_tail()}")
            if self._answers():
                return
            time.sleep(CONNECT_RETRY_SECONDS)
        self.stop()
        raise RuntimeError(f"dovecot did not answer within {START_TIMEOUT_SECONDS}s "
                           f"{self._log_tail()}")

    def _answers(self) -> bool:
        """Both listeners accept a connection and the IMAPS one greets over TLS."""
        try:
            with socket.create_connection((self.host, self.imap_port), timeout=1) as plain:
                if not plain.recv(100).startswith(b"* OK"):
                    return False
            ctx = ssl.create_default_context(cafile=str(self.cert))
            with socket.create_connection((self.host, self.imaps_port), timeout=1) as raw, \
                    ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.recv(100).startswith(b"* OK")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the master and every child at once, as a crash or a reboot would.

        Dovecot runs in its own process group; the whole group is signalled and
        awaited, so an imap process cannot finish a client's command after
        `stop` has returned.
        """
        if self.process is None:
            return
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT_SECONDS)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(CONNECT_RETRY_SECONDS)
        if _group_alive(group):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.process = None

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    # -- a client for the test's own side of the mailbox -------------------------

    def client(self) -> IMAPClient:
        ctx = ssl.create_default_context(cafile=str(self.cert))
        client = IMAPClient(self.host, port=self.imaps_port, ssl=True, ssl_context=ctx,
                            timeout=10)
        client.login(self.user, self.password)
        return client

    def append(self, raw: bytes, folder: str = "INBOX",
               when: dt.datetime | None = None) -> None:
        with self.client() as c:
            c.append(folder, raw, msg_time=when)

    def append_many(self, raws: list[bytes], folder: str = "INBOX") -> None:
        with self.client() as c:
            for raw in raws:
                c.append(folder, raw)

    def count(self, folder: str) -> int:
        with self.client() as c:
            if not c.folder_exists(folder):
                return 0
            return int(c.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"])

    def messages(self, folder: str) -> list[bytes]:
        with self.client() as c:
            if not c.folder_exists(folder):
                return []
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            data = c.fetch(uids, [b"BODY.PEEK[]"]) if uids else {}
            return [data[u][b"BODY[]"] for u in sorted(data)]


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal still exists
        return True
    return True


def dovecot_unavailable() -> str | None:
    if not Path(DOVECOT).exists():
        return f"{DOVECOT} is not installed (apt-get install dovecot-imapd)"
    return None


@pytest.fixture(name="dovecot")
def dovecot_server(tmp_path: Path) -> Iterator[Dovecot]:
    """A running Dovecot for one test; skipped (with the reason) where it cannot start."""
    reason = dovecot_unavailable()
    if reason:
        pytest.skip(reason)
    if os.getuid() == 0:
        # The mail processes run as the `dovecot` user and must reach the
        # maildir, but pytest's tmp_path is private to root (0700); a folder of
        # our own under the system temp dir, removed afterwards, is reachable.
        root = Path(tempfile.mkdtemp(prefix="rootnotify-dovecot-"))
        root.chmod(0o711)
    else:
        root = tmp_path / "dovecot"
        root.mkdir()
    cert, _key = _self_signed(root)
    server = Dovecot(root=root, imaps_port=free_port(), imap_port=free_port(), cert=cert)
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"Dovecot could not be started here: {exc}")
    try:
        yield server
    finally:
        server.stop()
        # Captured by pytest and shown only when the test fails: what the
        # server saw is half of the story of a failed IMAP test.
        print(f"dovecot.log (tail):\n{server._log_tail()}")
        if os.getuid() == 0:
            shutil.rmtree(root, ignore_errors=True)
