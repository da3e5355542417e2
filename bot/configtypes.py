"""The frozen configuration objects, one per section, that load_config builds and passes down."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot.errors import ConfigError
from bot.parse.mail.limits import DEFAULT_LIMITS, MessageLimits
from bot.rules.rulesets import Ruleset


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
