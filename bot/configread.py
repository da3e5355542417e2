"""Reading one TOML table against its schema and checking single values, naming file and key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.configschema import REQUIRED
from bot.configtypes import WebConfig
from bot.errors import ConfigError


def duration(text: str, where: str) -> timedelta:
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds", "w": "weeks"}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise ConfigError(f"{where}: {text!r} is not a duration like 1d, 12h, 30m")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


class Reader:
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


def address_of(reader: Reader, section: str, key: str, value: str) -> str:
    value = value.strip().lower()
    local, _, domain = value.partition("@")
    if not local or not domain or " " in value or "@" in domain:
        raise ConfigError(f"{reader.where(section, key)}: {value!r} is not an e-mail address")
    return value


def storage_url(reader: Reader, url: str, data_dir: Path) -> str:
    if not url:
        return f"sqlite:///{data_dir / 'rootnotify.db'}"
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix):]
        if rest and rest != ":memory:" and not rest.startswith("file:"):
            return prefix + str(reader.path_of(rest))
    return url


def analysis_timeout(reader: Reader, value: int) -> int:
    if not 1 <= value <= 3600:
        raise ConfigError(f"{reader.where('bot', 'analysis_timeout_seconds')}: {value} is not "
                          f"between 1 and 3600 seconds")
    return value


def positive(reader: Reader, section: str, key: str, value: int) -> int:
    if value <= 0:
        raise ConfigError(f"{reader.where(section, key)}: must be positive")
    return value


def analysis_processes(reader: Reader, value: int) -> int:
    if not 0 <= value <= 64:
        raise ConfigError(f"{reader.where('bot', 'analysis_processes')}: {value} is not "
                          f"between 0 (parse in the worker) and 64")
    return value


def web_config(reader: Reader, w: dict[str, Any]) -> WebConfig:
    if not 0 <= w["port"] <= 65535:
        raise ConfigError(f"{reader.where('web', 'port')}: {w['port']} is not a TCP port")
    base_url = (w["base_url"] or f"http://{w['host']}:{w['port']}").rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{reader.where('web', 'base_url')}: must start with http:// or "
                          "https://")
    return WebConfig(enabled=w["enabled"], host=w["host"], port=w["port"], base_url=base_url)
