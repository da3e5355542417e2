"""TOML configuration to frozen config objects, with one-line errors naming key and file.

The schema is a table per section (key → type and default, in configschema).
Unknown keys are errors too: a typo in `adresses` must not silently leave staff
unconfigured. Relative paths are resolved against the folder of the config
file; secrets may come from the environment through `*_env` keys.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.configread import (
    Reader,
    address_of,
    analysis_processes,
    analysis_timeout,
    duration,
    positive,
    storage_url,
    web_config,
)
from bot.configschema import CA_SCHEMA, OUTGOING_MODES, REQUIRED, SCHEMA, STAFF_AUTH
from bot.configtypes import (
    BotConfig,
    CaConfig,
    Config,
    ImapConfig,
    OutgoingConfig,
    SchedulerConfig,
    SmtpConfig,
    StaffConfig,
    WebConfig,
)
from bot.errors import ConfigError
from bot.parse.mail.archives import ArchiveLimits
from bot.parse.mail.limits import MessageLimits
from bot.rules.rulesets import RULESETS, get_ruleset

# Callers import the schema and the config objects from here, as before the split.
__all__ = [
    "CA_SCHEMA", "OUTGOING_MODES", "REQUIRED", "SCHEMA", "STAFF_AUTH",
    "BotConfig", "CaConfig", "Config", "ImapConfig", "OutgoingConfig", "SchedulerConfig",
    "SmtpConfig", "StaffConfig", "WebConfig",
    "config_path", "load_config", "load_config_listing_missing",
]


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
    path, data = _read_toml(Path(path).expanduser().resolve())
    reader = Reader(path, missing)
    sections = _sections(reader, data)
    b, sm, im, out, staff = (sections[k] for k in ("bot", "smtp", "imap", "outgoing", "staff"))
    tz, prefix, data_dir, address = _check_bot(reader, b)
    _check_choices_and_numbers(reader, sections)
    cas = _cas(reader, data)
    # The sections are built in this order so the first problem reported stays
    # the same one as before load_config was split into steps.
    return Config(
        path=path,
        bot=_bot(reader, b, tz=tz, prefix=prefix, data_dir=data_dir, address=address),
        storage_url=storage_url(reader, sections["storage"]["url"], data_dir),
        smtp=_smtp(reader, sm),
        imap=_imap(reader, im, env),
        outgoing=_outgoing(reader, out, env),
        staff=_staff(reader, staff),
        cas=cas,
        scheduler=_scheduler(reader, sections["scheduler"]),
        limits=_limits(sm, sections["limits"]),
        web=web_config(reader, sections["web"]),
        raw=data,
    )


def _read_toml(path: Path) -> tuple[Path, dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        with path.open("rb") as fh:
            return path, tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _sections(reader: Reader, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every schema section read and type-checked (absent ones from their defaults)."""
    unknown = sorted(set(data) - set(SCHEMA) - {"ca"})
    if unknown:
        raise ConfigError(f"{reader.path}: [{unknown[0]}] unknown section")
    if "bot" not in data:
        raise ConfigError(f"{reader.path}: [bot] address: missing required key")
    return {name: reader.table(name, data.get(name, {}), schema)
            for name, schema in SCHEMA.items()}


def _check_bot(reader: Reader, b: dict[str, Any]) -> tuple[ZoneInfo, str, Path, str]:
    """The [bot] values that need more than a type check: zone, prefix, folder, address."""
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
    return tz, prefix, data_dir, address_of(reader, "bot", "address", b["address"])


def _check_choices_and_numbers(reader: Reader, sections: dict[str, dict[str, Any]]) -> None:
    sm, im, out, staff, lim = (sections[k] for k in
                               ("smtp", "imap", "outgoing", "staff", "limits"))
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


def _cas(reader: Reader, data: dict[str, Any]) -> tuple[CaConfig, ...]:
    cas_data = data.get("ca", [])
    if not isinstance(cas_data, list):
        raise ConfigError(f"{reader.path}: [[ca]] must be an array of tables")
    cas = []
    for i, ca_data in enumerate(cas_data):
        section = f"ca #{i + 1}"
        c = reader.table(section, ca_data, CA_SCHEMA)
        cas.append(CaConfig(
            name=c["name"],
            contacts=tuple(address_of(reader, section, "contacts", a) for a in c["contacts"]),
            smime_anchors=tuple(reader.existing_path(section, "smime_anchors", p)
                                for p in c["smime_anchors"]),
            roots=tuple(reader.existing_path(section, "roots", p) for p in c["roots"]),
        ))
    names = [ca.name for ca in cas]
    if len(set(names)) != len(names):
        raise ConfigError(f"{reader.path}: [[ca]] name: two CAs share a name")
    return tuple(cas)


def _bot(reader: Reader, b: dict[str, Any], *, tz: ZoneInfo, prefix: str, data_dir: Path,
         address: str) -> BotConfig:
    # A marker unique to this deployment, so two rootnotify instances (or two
    # programs) can tell each other's mail apart from their own.
    loop_marker = b["loop_marker"] or hashlib.sha256(
        f"{address}|{data_dir}".encode()).hexdigest()[:16]
    return BotConfig(
        address=address,
        incident_prefix=prefix,
        data_dir=data_dir,
        timezone=tz,
        ruleset=get_ruleset(b["ruleset"]),
        templates_dir=reader.path_of(b["templates_dir"]) if b["templates_dir"] else None,
        loop_marker=loop_marker,
        max_auto_replies_per_day=b["max_auto_replies_per_day"],
        analysis_processes=analysis_processes(reader, b["analysis_processes"]),
        analysis_timeout_seconds=analysis_timeout(reader, b["analysis_timeout_seconds"]),
        analysis_memory_limit=positive(reader, "bot", "analysis_memory_limit",
                                       b["analysis_memory_limit"]),
        analysis_recycle_rss=positive(reader, "bot", "analysis_recycle_rss",
                                      b["analysis_recycle_rss"]),
        node_name=b["node_name"].strip() or socket.gethostname(),
    )


def _smtp(reader: Reader, sm: dict[str, Any]) -> SmtpConfig:
    return SmtpConfig(
        enabled=sm["enabled"], host=sm["host"], port=sm["port"],
        max_message_size=sm["max_message_size"], hostname=sm["hostname"],
        max_connections=sm["max_connections"], max_recipients=sm["max_recipients"],
        tls_certificate=reader.optional_path("smtp", "tls_certificate", sm["tls_certificate"]),
        tls_key=reader.optional_path("smtp", "tls_key", sm["tls_key"]),
        command_call_limit=sm["command_call_limit"],
        max_connections_per_client=sm["max_connections_per_client"],
        reserved_percent=sm["reserved_percent"],
        session_timeout=sm["session_timeout"],
        min_data_rate=sm["min_data_rate"],
        unlimited_clients=tuple(sm["unlimited_clients"]),
    )


def _imap(reader: Reader, im: dict[str, Any], env: Mapping[str, str]) -> ImapConfig:
    # The password is checked where IMAP is logged in to (ImapConfig.require_password),
    # not here: `incidents` or `status` on the operator's shell need no password.
    return ImapConfig(
        enabled=im["enabled"], host=im["host"], port=im["port"], ssl=im["ssl"],
        starttls=im["starttls"], username=im["username"],
        password=env.get(im["password_env"]) if im["password_env"] else None,
        password_env=im["password_env"], folder=im["folder"],
        processed_folder=im["processed_folder"], poll_interval=im["poll_interval"],
        idle=im["idle"], batch_size=im["batch_size"], alert_after=im["alert_after"],
        ca_file=reader.optional_path("imap", "ca_file", im["ca_file"]),
    )


def _outgoing(reader: Reader, out: dict[str, Any], env: Mapping[str, str]) -> OutgoingConfig:
    return OutgoingConfig(
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
    )


def _staff(reader: Reader, staff: dict[str, Any]) -> StaffConfig:
    return StaffConfig(
        addresses=tuple(address_of(reader, "staff", "addresses", a)
                        for a in staff["addresses"]),
        auth=staff["auth"],
        certificates=tuple(reader.existing_path("staff", "certificates", p)
                           for p in staff["certificates"]),
        signature_window=duration(staff["signature_window"],
                                  reader.where("staff", "signature_window")),
    )


def _scheduler(reader: Reader, sch: dict[str, Any]) -> SchedulerConfig:
    return SchedulerConfig(
        interval=sch["interval"],
        due_soon=duration(sch["due_soon"], reader.where("scheduler", "due_soon")),
        overdue_every=duration(sch["overdue_every"], reader.where("scheduler", "overdue_every")),
        digest_hour=sch["digest_hour"],
    )


def _limits(sm: dict[str, Any], lim: dict[str, Any]) -> MessageLimits:
    return MessageLimits(
        max_message_bytes=sm["max_message_size"],
        max_parts=lim["max_mime_parts"],
        max_depth=lim["max_mime_depth"],
        max_headers=lim["max_header_fields"],
        max_header_line=lim["max_header_line"],
        max_attachments=lim["max_attachments"],
        archive=ArchiveLimits(max_decompressed_bytes=lim["max_decompressed_bytes"],
                              max_ratio=float(lim["max_compression_ratio"])),
    )


def config_path(option: str | None, environ: dict[str, str] | None = None) -> Path:
    """--config, else ROOTNOTIFY_CONFIG, else ./config.toml (the contract's order)."""
    env = os.environ if environ is None else environ
    return Path(option or env.get("ROOTNOTIFY_CONFIG") or "config.toml")
