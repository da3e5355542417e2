"""`rootnotify check-config`: try everything the configuration names, and list what fails.

Loading the configuration stops at its first wrong key (`bot.config`); this
goes on from there and checks the world the configuration points at: every
certificate and key file, the database, the data folder, the relay (EHLO and
QUIT) and the IMAP login (the poller's own check), collecting every problem rather than the first.

It changes nothing: the database is looked at, never created or migrated
(`serve` does that), and the data folder is not made. A relay or IMAP server
that cannot be reached is a warning, not a problem: an outage of theirs must
not keep the listener from starting (the unit runs this before `serve`);
one that answers and refuses the login is a problem.
"""

from __future__ import annotations

import os
import smtplib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from bot.config import Config, OutgoingConfig, SmtpConfig
from bot.errors import ConfigError
from bot.intake.imap.connection import ImapUnavailable
from bot.trust import load_certificate_file
from storage.db import peek_revision
from storage.migrate import HEAD

# Long enough for a relay or IMAP server across a WAN; a check-config that
# hangs longer than this is worse than one that says "no answer".
NETWORK_TIMEOUT_SECONDS = 10


@dataclass
class Findings:
    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def check(self, what: str, test: Callable[[], str | None], remote: bool = False) -> None:
        """Run one check; its return value (if any) is detail for the OK line.

        `remote`: a server that cannot be reached is a warning (it may be back soon).
        """
        try:
            detail = test()
        except smtplib.SMTPResponseException as exc:  # it answered, and said no
            self.problems.append(f"{what}: {exc.smtp_code} "
                                 f"{exc.smtp_error.decode(errors='replace')}")
        except (OSError, ImapUnavailable) as exc:
            (self.warnings if remote else self.problems).append(
                f"{what}: {exc}" + (" (not reachable now; serve keeps trying)" if remote
                                    else ""))
        except Exception as exc:  # every failure is a finding, never a traceback
            self.problems.append(f"{what}: {exc}")
        else:
            self.ok.append(f"{what}" + (f": {detail}" if detail else ""))


def _certificates(path: Path, now: datetime) -> str:
    certs = load_certificate_file(path)
    expired = [c for c in certs if c.not_valid_after_utc < now]
    if expired:
        raise ConfigError(f"{path}: {len(expired)} of {len(certs)} certificate(s) expired "
                          f"(first: {expired[0].subject.rfc4514_string()})")
    return f"{len(certs)} certificate(s)"


def _private_key(path: Path) -> str:
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:
        try:
            key = serialization.load_der_private_key(data, password=None)
        except ValueError:
            raise ConfigError(f"{path}: no unencrypted private key could be read "
                              "(PEM or DER)") from None
    return type(key).__name__.lstrip("_")


def _key_matches(key_path: Path, cert_path: Path) -> str:
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    cert = load_certificate_file(cert_path)[0]
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        raise ConfigError(f"{key_path} is not the key of {cert_path}")
    return "key and certificate match"


def _relay(config: Config) -> str:
    out = config.outgoing
    with smtplib.SMTP(out.host, out.port, local_hostname=config.smtp.hostname,
                      timeout=NETWORK_TIMEOUT_SECONDS) as smtp:
        code, banner = smtp.ehlo()
        if code != 250:
            raise ConfigError(f"EHLO answered {code} {banner.decode(errors='replace')}")
        if out.starttls:
            smtp.starttls()
            smtp.ehlo()
        if out.username:
            smtp.login(out.username, out.password or "")
    return f"{out.host}:{out.port} answers EHLO"


def _imap(config: Config) -> str:
    # The poller's own login check: the same TLS, credentials and folder
    # handling as `serve`, so a pass here means the poller can log in.
    from bot.intake.imap.poller import check_login

    found = check_login(config.imap)
    if not found.folder_exists:
        raise ConfigError(f"logged in to {found.server}, but folder {config.imap.folder!r} "
                          "does not exist")
    return (f"{config.imap.username}@{found.server} logged in; {config.imap.folder} has "
            f"{found.messages} message(s); IDLE {'yes' if found.idle else 'no'}, "
            f"MOVE {'yes' if found.move else 'no'}")


def _writable(path: Path) -> str:
    """Writable, or creatable by `serve` (nothing is made here)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"{path} is not writable" + ("" if probe == path else
                                                       f" ({probe} does not let it be made)"))
    return str(path) + ("" if probe == path else " (serve makes it)")


def _database(url: str) -> str:
    """The schema revision as found, read-only; `serve` upgrades it."""
    try:
        found = peek_revision(url)
    except FileNotFoundError:
        return "not made yet; serve makes it"
    if found is None:
        return "empty; serve makes the tables"
    if found == HEAD:
        return f"schema revision {found}"
    if found.isdigit() and int(found) < int(HEAD):
        return f"schema revision {found}; serve upgrades it to {HEAD}"
    raise ConfigError(f"schema revision {found}, which this rootnotify does not know (its "
                      f"newest is {HEAD}): a newer rootnotify made it")


def _folder(path: Path | None) -> str:
    if path is None or not path.is_dir():
        raise ConfigError(f"{path} is not a folder")
    return str(path)


def check_world(config: Config, now: datetime, missing: Sequence[str] = ()) -> Findings:
    """Every check; `missing` are the files the configuration names that are not there."""
    f = Findings()
    f.problems.extend(missing)
    absent = {p for p in _named_files(config) if not p.is_file()}
    f.check("data_dir", lambda: _writable(config.bot.data_dir))
    f.check(f"database {config.storage_url.split('?')[0]}",
            lambda: _database(config.storage_url))
    if config.staff.auth == "none":
        f.warnings.append("[staff] auth is none: anyone who forges a staff address in From "
                          "can command the bot (set smime or dkim)")
    if config.imap.enabled and not config.imap.password:
        f.problems.append(f"[imap] password_env: environment variable "
                          f"{config.imap.password_env!r} is not set")
    if config.bot.templates_dir is not None:
        f.check("[bot] templates_dir", lambda: _folder(config.bot.templates_dir))
    _check_certificates(f, config, absent, now)
    _check_outgoing_keys(f, config.outgoing, absent, now)
    _check_smtp_tls(f, config.smtp, absent, now)
    if config.outgoing.mode == "smtp":
        f.check("[outgoing] relay", lambda: _relay(config), remote=True)
    if config.imap.enabled and config.imap.password:
        f.check("[imap] server", lambda: _imap(config), remote=True)
    return f


def _check_certificates(f: Findings, config: Config, absent: set[Path], now: datetime) -> None:
    """Staff certificates and every CA's anchors and roots."""
    for path in (p for p in config.staff.certificates if p not in absent):
        f.check(f"[staff] certificate {path}", lambda p=path: _certificates(p, now))
    if config.staff.auth == "smime" and not config.staff.certificates:
        f.problems.append("[staff] auth is smime but no certificates are configured: "
                          "no staff command will ever count")
    for ca in config.cas:
        for path in (p for p in ca.smime_anchors if p not in absent):
            f.check(f"[[ca]] {ca.name} anchor {path}", lambda p=path: _certificates(p, now))
        for path in (p for p in ca.roots if p not in absent):
            f.check(f"[[ca]] {ca.name} root {path}", lambda p=path: _certificates(p, now))


def _check_outgoing_keys(f: Findings, out: OutgoingConfig, absent: set[Path],
                         now: datetime) -> None:
    """The signing and decryption key pairs, each alone and together."""
    for name in ("signing", "decryption"):
        key, cert = getattr(out, f"{name}_key"), getattr(out, f"{name}_certificate")
        if key in absent or cert in absent:
            continue
        if key is not None:
            f.check(f"[outgoing] {name}_key {key}", lambda k=key: _private_key(k))
        if cert is not None:
            f.check(f"[outgoing] {name}_certificate {cert}", lambda c=cert: _certificates(c, now))
        if (key is None) != (cert is None):
            f.problems.append(f"[outgoing] {name}_key and {name}_certificate go together")
        elif key is not None and cert is not None:
            f.check(f"[outgoing] {name} pair", lambda k=key, c=cert: _key_matches(k, c))


def _check_smtp_tls(f: Findings, sm: SmtpConfig, absent: set[Path], now: datetime) -> None:
    """The listener's TLS certificate and key, each alone and together."""
    if sm.tls_certificate in absent or sm.tls_key in absent:
        pass
    elif sm.tls_certificate is not None:
        f.check(f"[smtp] tls_certificate {sm.tls_certificate}",
                lambda: _certificates(sm.tls_certificate, now))  # type: ignore[arg-type]
    if sm.tls_key is not None and sm.tls_key not in absent:
        f.check(f"[smtp] tls_key {sm.tls_key}",
                lambda: _private_key(sm.tls_key))  # type: ignore[arg-type]
    if (sm.tls_certificate is None) != (sm.tls_key is None):
        f.problems.append("[smtp] tls_certificate and tls_key go together")


def _named_files(config: Config) -> list[Path]:
    out, sm = config.outgoing, config.smtp
    files = [*config.staff.certificates, *(p for ca in config.cas for p in ca.smime_anchors),
             *(p for ca in config.cas for p in ca.roots), out.signing_key,
             out.signing_certificate, out.decryption_key, out.decryption_certificate,
             sm.tls_certificate, sm.tls_key, config.imap.ca_file]
    return [p for p in files if p is not None]
