"""TOML configuration to frozen config objects, with one-line errors naming key and file.

The schema is a table per section (key → type and default). Unknown keys are
errors too: a typo in `adresses` must not silently leave staff unconfigured.
Relative paths are resolved against the folder of the config file; secrets
may come from the environment through `*_env` keys.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.errors import ConfigError
from bot.parse.mail.archives import ArchiveLimits
from bot.parse.mail.limits import DEFAULT_LIMITS, MessageLimits
from bot.rules.rulesets import DEFAULT_RULESET, RULESETS, Ruleset, get_ruleset

REQUIRED = object()

# section → key → (type, default). `list` means a list of strings.
SCHEMA: dict[str, dict[str, tuple[type, Any]]] = {
    "bot": {
        "address": (str, REQUIRED),
        "incident_prefix": (str, "INC"),
        "data_dir": (str, "var"),
        "timezone": (str, "UTC"),
        "ruleset": (str, DEFAULT_RULESET),
        "templates_dir": (str, ""),
        "loop_marker": (str, ""),
        "max_auto_replies_per_day": (int, 40),
        # Child processes that parse mail beside `serve`'s worker (bot.service.analysispool);
        # 0 parses in the worker itself.
        "analysis_processes": (int, 1),
        # How long parsing a batch may take in such a child before it is
        # killed and the message it was on failed.
        "analysis_timeout_seconds": (int, 60),
        # Address space (MiB) one analysis process may map (RLIMIT_AS): a
        # 177 KB .docx whose XML unpacks to 45 MB grew a parser to 657 MB.
        # A parse past it fails (MemoryError), not the host.
        "analysis_memory_limit": (int, 512),
        # Peak resident size (MiB) past which an analysis process is replaced
        # after the batch that made it so large: what a parse freed may stay
        # mapped (CPython's arenas, malloc's heap).
        "analysis_recycle_rss": (int, 256),
        # This `serve`'s name among the hosts of one database (bot.node,
        # `status --json` nodes); empty: the host name.
        "node_name": (str, ""),
    },
    "storage": {"url": (str, "")},
    "smtp": {
        "enabled": (bool, True),
        "host": (str, "127.0.0.1"),
        "port": (int, 8025),
        "max_message_size": (int, 26_214_400),
        "hostname": (str, "rootnotify.local"),
        "max_connections": (int, 100),
        "max_recipients": (int, 50),
        "tls_certificate": (str, ""),
        "tls_key": (str, ""),
        # Commands of one kind allowed per session (aiosmtpd command_call_limit):
        # a real client sends a few RCPT per mail and reuses a session for
        # hundreds of mails at most; a peer spinning on NOOP/RSET is cut off.
        "command_call_limit": (int, 1000),
        # Sessions one client address may hold at once (Postfix's
        # smtpd_client_connection_count_limit): an MTA delivering to us opens
        # a few in parallel; more from one address is a client holding slots.
        "max_connections_per_client": (int, 5),
        # Percent of max_connections kept for clients with no other session,
        # so that many addresses holding a few each still leave room.
        "reserved_percent": (int, 10),
        # A session's deadline as a whole, in seconds, extended by what it
        # sends at min_data_rate bytes/s: aiosmtpd's idle timeout is reset by
        # every command, so a client trickling NOOPs would hold a slot forever.
        "session_timeout": (int, 300),
        "min_data_rate": (int, 500),
        # Client addresses the per-client cap and the reserve do not apply to
        # (Postfix's smtpd_client_event_limit_exceptions): the program's own
        # MX, when it relays all intake mail to the listener from one address.
        "unlimited_clients": (list, []),
    },
    "imap": {
        "enabled": (bool, False),
        "host": (str, "127.0.0.1"),
        "port": (int, 993),
        "ssl": (bool, True),
        "starttls": (bool, False),
        "username": (str, "rootnotify"),
        "password_env": (str, "ROOTNOTIFY_IMAP_PASSWORD"),
        "folder": (str, "INBOX"),
        "processed_folder": (str, "Processed"),
        "poll_interval": (int, 60),
        "idle": (bool, True),
        "batch_size": (int, 50),
        "alert_after": (int, 3600),
        "ca_file": (str, ""),
    },
    "outgoing": {
        "mode": (str, "smtp"),
        "host": (str, "127.0.0.1"),
        "port": (int, 2525),
        "from": (str, REQUIRED),
        "starttls": (bool, False),
        "username": (str, ""),
        "password_env": (str, ""),
        "signing_key": (str, ""),
        "signing_certificate": (str, ""),
        "decryption_key": (str, ""),
        "decryption_certificate": (str, ""),
    },
    "staff": {
        "addresses": (list, []),
        "auth": (str, "smime"),
        "certificates": (list, []),
        # How far a signed command's signing time (S/MIME signingTime, DKIM t=)
        # may lie from its receipt: a mail client signs when it sends, so real
        # mail is minutes off; a day or two covers a queue held over a weekend.
        "signature_window": (str, "48h"),
    },
    "limits": {
        "max_mime_parts": (int, DEFAULT_LIMITS.max_parts),
        "max_mime_depth": (int, DEFAULT_LIMITS.max_depth),
        "max_header_fields": (int, DEFAULT_LIMITS.max_headers),
        "max_header_line": (int, DEFAULT_LIMITS.max_header_line),
        "max_attachments": (int, DEFAULT_LIMITS.max_attachments),
        "max_decompressed_bytes": (int, DEFAULT_LIMITS.archive.max_decompressed_bytes),
        "max_compression_ratio": (int, int(DEFAULT_LIMITS.archive.max_ratio)),
    },
    # The staff web view (bot/operator/web): `serve` runs it too when enabled.
    "web": {
        "enabled": (bool, False),
        "host": (str, "127.0.0.1"),
        "port": (int, 8080),
        "base_url": (str, ""),  # default: http://host:port
    },
    "scheduler": {
        "interval": (int, 30),
        "due_soon": (str, "1d"),
        "overdue_every": (str, "1d"),
        "digest_hour": (int, 8),
    },
}
CA_SCHEMA: dict[str, tuple[type, Any]] = {
    "name": (str, REQUIRED),
    "contacts": (list, REQUIRED),
    "smime_anchors": (list, []),
    "roots": (list, []),
}
OUTGOING_MODES = ("smtp", "maildir")
STAFF_AUTH = ("smime", "dkim", "none")


@dataclass(frozen=True)
class BotConfig:
    address: str
    incident_prefix: str
    data_dir: Path
    timezone: ZoneInfo
    ruleset: Ruleset
    templates_dir: Path | None
    loop_marker: str
    max_auto_replies_per_day: int
    analysis_processes: int = 1
    analysis_timeout_seconds: int = 60
    analysis_memory_limit: int = 512
    analysis_recycle_rss: int = 256
    node_name: str = ""

    @property
    def spool_dir(self) -> Path:
        """Where `serve` spools SMTP mail before the worker imports it (storage.spool)."""
        return self.data_dir / "spool"


@dataclass(frozen=True)
class SmtpConfig:
    enabled: bool
    host: str
    port: int
    max_message_size: int
    hostname: str
    max_connections: int
    max_recipients: int
    tls_certificate: Path | None
    tls_key: Path | None
    command_call_limit: int = 1000
    max_connections_per_client: int = 5
    reserved_percent: int = 10
    session_timeout: int = 300
    min_data_rate: int = 500
    unlimited_clients: tuple[str, ...] = ()

    @property
    def reserved_connections(self) -> int:
        """Slots a client that already has a session may not take."""
        return self.max_connections * self.reserved_percent // 100


@dataclass(frozen=True)
class ImapConfig:
    enabled: bool
    host: str
    port: int
    ssl: bool
    starttls: bool
    username: str
    password: str | None
    password_env: str
    folder: str
    processed_folder: str
    poll_interval: int
    idle: bool
    batch_size: int
    alert_after: int
    ca_file: Path | None

    def require_password(self) -> str:
        """The login password; only what logs in to IMAP asks, so other commands run without it."""
        if not self.password:
            raise ConfigError(f"[imap] password_env: environment variable {self.password_env!r} "
                              "is not set (needed to log in to IMAP)")
        return self.password


@dataclass(frozen=True)
class OutgoingConfig:
    mode: str
    host: str
    port: int
    from_address: str  # the `from` key: a full From header value
    starttls: bool
    username: str
    password: str | None
    signing_key: Path | None
    signing_certificate: Path | None
    decryption_key: Path | None
    decryption_certificate: Path | None


@dataclass(frozen=True)
class StaffConfig:
    addresses: tuple[str, ...]
    auth: str
    certificates: tuple[Path, ...]
    signature_window: timedelta = timedelta(hours=48)


@dataclass(frozen=True)
class CaConfig:
    name: str
    contacts: tuple[str, ...]
    smime_anchors: tuple[Path, ...]
    roots: tuple[Path, ...]


@dataclass(frozen=True)
class SchedulerConfig:
    interval: int
    due_soon: timedelta
    overdue_every: timedelta
    digest_hour: int


@dataclass(frozen=True)
class WebConfig:
    enabled: bool
    host: str
    port: int
    base_url: str  # no trailing slash; sign-in links are base_url + "/login/" + token

    @property
    def secure(self) -> bool:
        """Cookies get `Secure` when staff reach the view over https."""
        return self.base_url.startswith("https://")


@dataclass(frozen=True)
class Config:
    path: Path
    bot: BotConfig
    storage_url: str
    smtp: SmtpConfig
    imap: ImapConfig
    outgoing: OutgoingConfig
    staff: StaffConfig
    cas: tuple[CaConfig, ...]
    scheduler: SchedulerConfig
    # [limits], with [smtp] max_message_size as the message size.
    limits: MessageLimits = DEFAULT_LIMITS
    web: WebConfig = field(default_factory=lambda: WebConfig(False, "127.0.0.1", 8080,
                                                             "http://127.0.0.1:8080"))
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def ca_by_name(self, name: str) -> CaConfig | None:
        return next((ca for ca in self.cas if ca.name == name), None)

    def ca_for_address(self, address: str | None) -> CaConfig | None:
        if not address:
            return None
        address = address.lower()
        return next((ca for ca in self.cas if address in ca.contacts), None)

    def is_staff(self, address: str | None) -> bool:
        return bool(address) and address.lower() in self.staff.addresses


def _duration(text: str, where: str) -> timedelta:
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds", "w": "weeks"}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise ConfigError(f"{where}: {text!r} is not a duration like 1d, 12h, 30m")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


class _Reader:
    """Reads one table against its schema, naming the file and key in every error."""

    def __init__(self, path: Path, missing: list[str] | None = None) -> None:
        self.path = path
        self.base = path.parent
        # Given a list, a file that is not there is noted in it rather than
        # raised (`check-config` lists every one); else the first stops loading.
        self.missing = missing

    def where(self, section: str, key: str) -> str:
        return f"{self.path}: [{section}] {key}"

    def table(self, section: str, data: Any, schema: dict[str, tuple[type, Any]]) -> dict:
        if not isinstance(data, dict):
            raise ConfigError(f"{self.path}: [{section}] must be a table")
        unknown = sorted(set(data) - set(schema))
        if unknown:
            raise ConfigError(
                f"{self.where(section, unknown[0])}: unknown key "
                f"(known keys: {', '.join(sorted(schema))})"
            )
        out = {}
        for key, (kind, default) in schema.items():
            if key not in data:
                if default is REQUIRED:
                    raise ConfigError(f"{self.where(section, key)}: missing required key")
                out[key] = list(default) if isinstance(default, list) else default
                continue
            value = data[key]
            if kind is list:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ConfigError(f"{self.where(section, key)}: must be a list of strings")
            elif kind is int and (not isinstance(value, int) or isinstance(value, bool)):
                raise ConfigError(f"{self.where(section, key)}: must be an integer")
            elif not isinstance(value, kind):
                raise ConfigError(f"{self.where(section, key)}: must be a {kind.__name__}")
            out[key] = value
        return out

    def path_of(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base / p).resolve()

    def existing_path(self, section: str, key: str, value: str) -> Path:
        p = self.path_of(value)
        if not p.is_file():
            problem = f"{self.where(section, key)}: file {value!r} not found ({p})"
            if self.missing is None:
                raise ConfigError(problem)
            self.missing.append(problem)
        return p

    def optional_path(self, section: str, key: str, value: str) -> Path | None:
        return self.existing_path(section, key, value) if value else None


def _address(reader: _Reader, section: str, key: str, value: str) -> str:
    value = value.strip().lower()
    local, _, domain = value.partition("@")
    if not local or not domain or " " in value or "@" in domain:
        raise ConfigError(f"{reader.where(section, key)}: {value!r} is not an e-mail address")
    return value


def _storage_url(reader: _Reader, url: str, data_dir: Path) -> str:
    if not url:
        return f"sqlite:///{data_dir / 'rootnotify.db'}"
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix):]
        if rest and rest != ":memory:" and not rest.startswith("file:"):
            return prefix + str(reader.path_of(rest))
    return url


def _analysis_timeout(reader: _Reader, value: int) -> int:
    if not 1 <= value <= 3600:
        raise ConfigError(f"{reader.where('bot', 'analysis_timeout_seconds')}: {value} is not "
                          f"between 1 and 3600 seconds")
    return value


def _positive(reader: _Reader, section: str, key: str, value: int) -> int:
    if value <= 0:
        raise ConfigError(f"{reader.where(section, key)}: must be positive")
    return value


def _analysis_processes(reader: _Reader, value: int) -> int:
    if not 0 <= value <= 64:
        raise ConfigError(f"{reader.where('bot', 'analysis_processes')}: {value} is not "
                          f"between 0 (parse in the worker) and 64")
    return value


def load_config_listing_missing(path: str | os.PathLike[str]) -> tuple[Config, list[str]]:
    """The configuration, and every file it names that is not there (for `check-config`).

    A wrong key or value still raises ConfigError: the file itself is wrong.
    """
    missing: list[str] = []
    return load_config(path, missing=missing), missing


def load_config(path: str | os.PathLike[str], environ: dict[str, str] | None = None,
                missing: list[str] | None = None) -> Config:
    """Read and check the whole configuration; raise ConfigError on the first problem
    (with `missing`, files not found are noted there instead)."""
    env = os.environ if environ is None else environ
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    reader = _Reader(path, missing)

    unknown = sorted(set(data) - set(SCHEMA) - {"ca"})
    if unknown:
        raise ConfigError(f"{path}: [{unknown[0]}] unknown section")
    if "bot" not in data:
        raise ConfigError(f"{path}: [bot] address: missing required key")
    sections = {name: reader.table(name, data.get(name, {}), schema)
                for name, schema in SCHEMA.items()}
    b, st, sm, im, out, staff, sch, lim = (sections[k] for k in
                                           ("bot", "storage", "smtp", "imap", "outgoing",
                                            "staff", "scheduler", "limits"))

    try:
        tz = ZoneInfo(b["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{reader.where('bot', 'timezone')}: unknown time zone "
                          f"{b['timezone']!r}") from None
    if b["ruleset"] not in RULESETS:
        raise ConfigError(f"{reader.where('bot', 'ruleset')}: {b['ruleset']!r} is not one of "
                          f"{', '.join(RULESETS)}")
    prefix = b["incident_prefix"]
    if not prefix or not prefix.replace("-", "").isalnum():
        raise ConfigError(f"{reader.where('bot', 'incident_prefix')}: must be letters and digits")
    data_dir = reader.path_of(b["data_dir"])
    address = _address(reader, "bot", "address", b["address"])
    # A marker unique to this deployment, so two rootnotify instances (or two
    # programs) can tell each other's mail apart from their own.
    loop_marker = b["loop_marker"] or hashlib.sha256(
        f"{address}|{data_dir}".encode()).hexdigest()[:16]

    if out["mode"] not in OUTGOING_MODES:
        raise ConfigError(f"{reader.where('outgoing', 'mode')}: must be one of "
                          f"{', '.join(OUTGOING_MODES)}")
    if staff["auth"] not in STAFF_AUTH:
        raise ConfigError(f"{reader.where('staff', 'auth')}: must be one of "
                          f"{', '.join(STAFF_AUTH)}")
    for key, port in (("smtp", sm["port"]), ("imap", im["port"]), ("outgoing", out["port"])):
        if not 0 <= port <= 65535:
            raise ConfigError(f"{reader.where(key, 'port')}: {port} is not a TCP port")
    if sm["max_message_size"] <= 0:
        raise ConfigError(f"{reader.where('smtp', 'max_message_size')}: must be positive")

    for key, value in lim.items():
        if value <= 0:
            raise ConfigError(f"{reader.where('limits', key)}: must be positive")
    for key in ("command_call_limit", "max_connections_per_client", "session_timeout",
                "min_data_rate"):
        if sm[key] <= 0:
            raise ConfigError(f"{reader.where('smtp', key)}: must be positive")
    if not 0 <= sm["reserved_percent"] < 100:
        raise ConfigError(f"{reader.where('smtp', 'reserved_percent')}: must be from 0 to 99")

    # Checked where IMAP is logged in to (ImapConfig.require_password), not
    # here: `incidents` or `status` on the operator's shell need no password.
    imap_password = env.get(im["password_env"]) if im["password_env"] else None

    cas_data = data.get("ca", [])
    if not isinstance(cas_data, list):
        raise ConfigError(f"{path}: [[ca]] must be an array of tables")
    cas = []
    for i, ca_data in enumerate(cas_data):
        section = f"ca #{i + 1}"
        c = reader.table(section, ca_data, CA_SCHEMA)
        cas.append(CaConfig(
            name=c["name"],
            contacts=tuple(_address(reader, section, "contacts", a) for a in c["contacts"]),
            smime_anchors=tuple(reader.existing_path(section, "smime_anchors", p)
                                for p in c["smime_anchors"]),
            roots=tuple(reader.existing_path(section, "roots", p) for p in c["roots"]),
        ))
    names = [ca.name for ca in cas]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: [[ca]] name: two CAs share a name")

    return Config(
        path=path,
        bot=BotConfig(
            address=address,
            incident_prefix=prefix,
            data_dir=data_dir,
            timezone=tz,
            ruleset=get_ruleset(b["ruleset"]),
            templates_dir=reader.path_of(b["templates_dir"]) if b["templates_dir"] else None,
            loop_marker=loop_marker,
            max_auto_replies_per_day=b["max_auto_replies_per_day"],
            analysis_processes=_analysis_processes(reader, b["analysis_processes"]),
            analysis_timeout_seconds=_analysis_timeout(reader, b["analysis_timeout_seconds"]),
            analysis_memory_limit=_positive(reader, "bot", "analysis_memory_limit",
                                            b["analysis_memory_limit"]),
            analysis_recycle_rss=_positive(reader, "bot", "analysis_recycle_rss",
                                           b["analysis_recycle_rss"]),
            node_name=b["node_name"].strip() or socket.gethostname(),
        ),
        storage_url=_storage_url(reader, st["url"], data_dir),
        smtp=SmtpConfig(
            enabled=sm["enabled"], host=sm["host"], port=sm["port"],
            max_message_size=sm["max_message_size"], hostname=sm["hostname"],
            max_connections=sm["max_connections"], max_recipients=sm["max_recipients"],
            tls_certificate=reader.optional_path("smtp", "tls_certificate",
                                                 sm["tls_certificate"]),
            tls_key=reader.optional_path("smtp", "tls_key", sm["tls_key"]),
            command_call_limit=sm["command_call_limit"],
            max_connections_per_client=sm["max_connections_per_client"],
            reserved_percent=sm["reserved_percent"],
            session_timeout=sm["session_timeout"],
            min_data_rate=sm["min_data_rate"],
            unlimited_clients=tuple(sm["unlimited_clients"]),
        ),
        imap=ImapConfig(
            enabled=im["enabled"], host=im["host"], port=im["port"], ssl=im["ssl"],
            starttls=im["starttls"], username=im["username"], password=imap_password,
            password_env=im["password_env"], folder=im["folder"],
            processed_folder=im["processed_folder"], poll_interval=im["poll_interval"],
            idle=im["idle"], batch_size=im["batch_size"], alert_after=im["alert_after"],
            ca_file=reader.optional_path("imap", "ca_file", im["ca_file"]),
        ),
        outgoing=OutgoingConfig(
            mode=out["mode"], host=out["host"], port=out["port"], from_address=out["from"],
            starttls=out["starttls"], username=out["username"],
            password=env.get(out["password_env"]) if out["password_env"] else None,
            signing_key=reader.optional_path("outgoing", "signing_key", out["signing_key"]),
            signing_certificate=reader.optional_path("outgoing", "signing_certificate",
                                                     out["signing_certificate"]),
            decryption_key=reader.optional_path("outgoing", "decryption_key",
                                                out["decryption_key"]),
            decryption_certificate=reader.optional_path("outgoing", "decryption_certificate",
                                                        out["decryption_certificate"]),
        ),
        staff=StaffConfig(
            addresses=tuple(_address(reader, "staff", "addresses", a)
                            for a in staff["addresses"]),
            auth=staff["auth"],
            certificates=tuple(reader.existing_path("staff", "certificates", p)
                               for p in staff["certificates"]),
            signature_window=_duration(staff["signature_window"],
                                       reader.where("staff", "signature_window")),
        ),
        cas=tuple(cas),
        scheduler=SchedulerConfig(
            interval=sch["interval"],
            due_soon=_duration(sch["due_soon"], reader.where("scheduler", "due_soon")),
            overdue_every=_duration(sch["overdue_every"],
                                    reader.where("scheduler", "overdue_every")),
            digest_hour=sch["digest_hour"],
        ),
        limits=MessageLimits(
            max_message_bytes=sm["max_message_size"],
            max_parts=lim["max_mime_parts"],
            max_depth=lim["max_mime_depth"],
            max_headers=lim["max_header_fields"],
            max_header_line=lim["max_header_line"],
            max_attachments=lim["max_attachments"],
            archive=ArchiveLimits(max_decompressed_bytes=lim["max_decompressed_bytes"],
                                  max_ratio=float(lim["max_compression_ratio"])),
        ),
        web=_web(reader, sections["web"]),
        raw=data,
    )


def _web(reader: _Reader, w: dict[str, Any]) -> WebConfig:
    if not 0 <= w["port"] <= 65535:
        raise ConfigError(f"{reader.where('web', 'port')}: {w['port']} is not a TCP port")
    base_url = (w["base_url"] or f"http://{w['host']}:{w['port']}").rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{reader.where('web', 'base_url')}: must start with http:// or "
                          "https://")
    return WebConfig(enabled=w["enabled"], host=w["host"], port=w["port"], base_url=base_url)


def config_path(option: str | None, environ: dict[str, str] | None = None) -> Path:
    """--config, else ROOTNOTIFY_CONFIG, else ./config.toml (the contract's order)."""
    env = os.environ if environ is None else environ
    return Path(option or env.get("ROOTNOTIFY_CONFIG") or "config.toml")
