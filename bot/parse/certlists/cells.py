"""One cell of a certificate list read and checked: serials, fingerprints, crt.sh ids, domains."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from bot.parse.certlists.records import (
    _show,
)

# RFC 5280 caps serials at 20 octets; some non-conforming CAs used 21+.
# Beyond 32 octets it is not a serial anyone issued (a fingerprint, more likely).
MAX_SERIAL_HEX_DIGITS = 64
MAX_DECIMAL_SERIAL_DIGITS = 78  # 2**256 has 78 decimal digits
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_SERIAL_SEPARATORS = str.maketrans("", "", ": \t")
_DOMAIN_RE = re.compile(
    r"(?:\*\.)?(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?\.)+[a-z0-9-]*[a-z][a-z0-9-]*\.?"
)
_DOMAIN_SPLIT_RE = re.compile(r"[\s,;|\[\]{}\"']+")


# The separators of _DOMAIN_SPLIT_RE other than white space: without them a
# cell splits with str.split(), which splits on the same white space (both
# use Python's str.isspace) three times faster than the regex.
_DOMAIN_PUNCT_RE = re.compile(r"[,;|\[\]{}\"']")


def _hex_serial(value: str) -> str:
    """Canonical serial from hex with optional 0x, colons and spaces; ValueError(reason) if not."""
    if len(value) <= MAX_SERIAL_HEX_DIGITS and _HEX_RE.fullmatch(value):
        return value.lstrip("0").lower() or "0"  # the common case, four times faster
    s = value.strip()
    if s[:2] in ("0x", "0X"):
        s = s[2:]
    s = s.translate(_SERIAL_SEPARATORS)
    if not s:
        raise ValueError(f"serial {_show(value)} is empty")
    if not _HEX_RE.fullmatch(s):
        raise ValueError(f"serial {_show(value)} is not hexadecimal")
    s = s.lstrip("0").lower() or "0"
    if len(s) > MAX_SERIAL_HEX_DIGITS:
        raise ValueError(f"serial {_show(value)} has more than {MAX_SERIAL_HEX_DIGITS} hex digits")
    return s


def _decimal_serial(value: str) -> str:
    s = value.strip()
    if not s.isascii() or not s.isdigit():
        raise ValueError(f"decimal serial {_show(value)} is not a decimal number")
    if len(s) > MAX_DECIMAL_SERIAL_DIGITS:
        raise ValueError(f"decimal serial {_show(value)} is too long")
    return format(int(s), "x")


def _sha256(value: str) -> str:
    s = value.strip().translate(_SERIAL_SEPARATORS).lower()
    if s.startswith("sha256:"):
        s = s[7:]
    if len(s) != 64 or not _HEX_RE.fullmatch(s):
        raise ValueError(f"fingerprint {_show(value)} is not 64 hexadecimal digits (SHA-256)")
    return s


def _crtsh(value: str) -> tuple[int | None, str | None]:
    """(crt.sh id, sha256) from a bare id or a crt.sh URL."""
    if value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value), None
    s = value.strip()
    if s.isascii() and s.isdigit() and len(s) <= 19:
        return int(s), None
    if s.lower().startswith(("https://crt.sh", "http://crt.sh", "crt.sh/")):
        query = parse_qs(urlsplit(s if "://" in s else "https://" + s).query)
        for key, found in query.items():
            key = key.lower()
            if key == "id" and found and found[0].isdigit() and len(found[0]) <= 19:
                return int(found[0]), None
            if key in ("sha256", "q") and found:
                try:
                    return None, _sha256(found[0])
                except ValueError:
                    pass
    raise ValueError(
        f"crt.sh reference {_show(value)} is neither an id nor a crt.sh URL with id= or sha256="
    )


def _domains(value: str) -> list[str]:
    low = value.lower()
    if _DOMAIN_PUNCT_RE.search(low) is None:
        return low.split()
    return [d for d in _DOMAIN_SPLIT_RE.split(low) if d]


_MAX_CRTSH_DIGITS = 19  # a signed 64-bit id, as _crtsh accepts


def _looks_like_hex(cell: str) -> bool:
    s = cell[2:] if cell[:2] in ("0x", "0X") else cell
    s = s.translate(_SERIAL_SEPARATORS)
    return bool(s) and _HEX_RE.fullmatch(s) is not None
