"""CSV rows and plain text lines (serials, fingerprints, crt.sh URLs) read into records.

A header names the columns when there is one; otherwise each cell is
recognised by what it looks like. Rows of the common shape take a fast path
that builds CertFields tuples with no function call a cell.
"""

from __future__ import annotations

import binascii
import csv
import re
from collections.abc import Iterator

from bot.parse.certlists.cells import (
    _DOMAIN_PUNCT_RE,
    _DOMAIN_RE,
    _DOMAIN_SPLIT_RE,
    _HEX_RE,
    _MAX_CRTSH_DIGITS,
    _SERIAL_SEPARATORS,
    MAX_SERIAL_HEX_DIGITS,
    _crtsh,
    _decimal_serial,
    _domains,
    _hex_serial,
    _looks_like_hex,
    _sha256,
)
from bot.parse.certlists.der import (
    _PEM_BEGIN_RE,
    _CertReader,
)
from bot.parse.certlists.lines import _Lines
from bot.parse.certlists.records import (
    AnyItem,
    CertFields,
    CertRecord,
    Item,
    ListLimits,
    RejectedLine,
    _clip,
    _show,
)

# Column names, compared in lower case without spaces, punctuation or underscores.
_SERIAL_HEX, _SERIAL_DEC, _ISSUER, _SUBJECT, _SHA256, _CRTSH, _DOMAINS, _PEM = range(8)
_COLUMNS: dict[str, int] = {}
for _kind, _names in (
    (
        _SERIAL_HEX,
        "serial serial_number serialnumber serial_hex serial_number_hex "
        "certificate_serial cert_serial certificate_serial_number",
    ),
    (_SERIAL_DEC, "serial_decimal serial_dec serial_number_decimal decimal_serial"),
    (_ISSUER, "issuer issuer_dn issuer_name issuer_distinguished_name"),
    (_SUBJECT, "subject subject_dn subject_name"),
    (
        _SHA256,
        "sha256 sha_256 fingerprint sha256_fingerprint fingerprint_sha256 cert_sha256 "
        "certificate_sha256 sha256_hash sha256_fingerprint_hex",
    ),
    (_CRTSH, "crt_sh_id crtsh_id id crtsh crt_sh crt_sh_url crtsh_url crt_sh_link"),
    (
        _DOMAINS,
        "domains domain dns_names dns_name dnsnames san sans subject_alt_names "
        "subject_alternative_names subject_alt_name common_name cn names",
    ),
    (_PEM, "pem certificate cert certificate_pem cert_pem"),
):
    for _name in _names.split():
        # Keyed without underscores so "SHA-256 Fingerprint" finds sha256_fingerprint.
        _COLUMNS[_name.replace("_", "")] = _kind
_IDENTIFYING = frozenset({_SERIAL_HEX, _SERIAL_DEC, _SHA256, _CRTSH, _PEM})
_NORMALISE_RE = re.compile(r"[\s.\-/#()]+")


def _column_kind(cell: str) -> int | None:
    return _COLUMNS.get(_NORMALISE_RE.sub("", cell.strip().strip('"').lower()).replace("_", ""))


# Column kinds the fast path reads; a list with a PEM or decimal-serial column,
# or with a kind named twice, takes the general path for every row.
_FAST_KINDS = (_SERIAL_HEX, _ISSUER, _SUBJECT, _SHA256, _CRTSH, _DOMAINS)


def _fast_columns(columns: list[int | None]) -> tuple[int, ...] | None:
    """Each of _FAST_KINDS' column index (-1 if absent); None if the header does not fit."""
    kinds = [k for k in columns if k is not None]
    if any(k not in _FAST_KINDS for k in kinds) or len(set(kinds)) != len(kinds):
        return None
    return tuple(columns.index(k) if k in kinds else -1 for k in _FAST_KINDS)


class _RowParser:
    """One CSV row → record, by the header's column map or else by what each cell looks like."""

    def __init__(self, columns: list[int | None] | None, source: str, reader: _CertReader) -> None:
        self.columns = columns
        # Only the recognised columns, in order: most rows have a few of many.
        self.plan = (
            None if columns is None else [(i, k) for i, k in enumerate(columns) if k is not None]
        )
        self.source = source
        self.reader = reader
        self.fast = None if columns is None else _fast_columns(columns)
        self.width = 0 if self.fast is None else max(self.fast) + 1

    def parse(self, row: list[str], line: int, delimiter: str) -> AnyItem:
        """The row as CertFields when the fast path can read it, else as the general path does."""
        if self.fast is not None and len(row) >= self.width:
            fields = self._fast(row, line)
            if fields is not None:
                return fields
        return self._parse(row, line, delimiter)

    def _fast(self, row: list[str], line: int) -> CertFields | None:
        """A row of the common shape, read with no function call a cell.

        Plain hex serial, plain SHA-256, bare crt.sh id, issuer, subject,
        domains. None when a cell needs the general path, which then also
        words any rejection.
        """
        serial_at, issuer_at, subject_at, sha256_at, crtsh_at, domains_at = self.fast  # type: ignore[misc]
        serial = sha256 = issuer = subject = None
        crtsh_id: int | None = None
        if serial_at >= 0 and (value := row[serial_at]):
            if len(value) > MAX_SERIAL_HEX_DIGITS or _HEX_RE.fullmatch(value) is None:
                return None
            serial = value.lstrip("0").lower() or "0"
        if sha256_at >= 0 and (value := row[sha256_at]):
            if len(value) != 64 or _HEX_RE.fullmatch(value) is None:
                return None
            sha256 = value.lower()
        if crtsh_at >= 0 and (value := row[crtsh_at]):
            if not (value.isascii() and value.isdigit() and len(value) <= _MAX_CRTSH_DIGITS):
                return None
            crtsh_id = int(value)
        if serial is None and sha256 is None and crtsh_id is None:
            return None
        if issuer_at >= 0:
            issuer = row[issuer_at].strip() or None
        if subject_at >= 0:
            subject = row[subject_at].strip() or None
        dns: tuple[str, ...] = ()
        if domains_at >= 0 and (value := row[domains_at]):
            low = value.lower()
            if _DOMAIN_PUNCT_RE.search(low) is None:
                dns = tuple(low.split())
            else:
                dns = tuple(d for d in _DOMAIN_SPLIT_RE.split(low) if d)
        return (sha256, serial, issuer, subject, dns, None, None, False, crtsh_id, line,
                self.source)

    def _parse(self, row: list[str], line: int, delimiter: str) -> Item:
        dns: list[str] = []
        try:
            if self.plan is not None:
                serial, issuer, subject, sha256, crtsh_id, pem = self._planned(row, dns)
            else:
                serial, issuer, sha256, crtsh_id, pem = self._sniff(row, dns)
                subject = None
        except ValueError as exc:
            return RejectedLine(line, _clip(delimiter.join(row)), str(exc), self.source)
        if pem is not None:
            item = self._from_pem(pem, line, crtsh_id)
            if isinstance(item, RejectedLine):
                return RejectedLine(line, _clip(delimiter.join(row)), item.reason, self.source)
            if dns:
                item = _with_domains(item, dns)
            return item
        if serial is None and sha256 is None and crtsh_id is None:
            return RejectedLine(
                line,
                _clip(delimiter.join(row)),
                "no serial, SHA-256 fingerprint, crt.sh id or certificate in this line",
                self.source,
            )
        return CertRecord(
            sha256,
            serial,
            issuer,
            subject,
            tuple(dns),
            None,
            None,
            False,
            crtsh_id,
            line,
            self.source,
        )

    def _planned(
        self, row: list[str], dns: list[str]
    ) -> tuple[str | None, str | None, str | None, str | None, int | None, str | None]:
        """The cells read as the header's plan says; domains go into `dns`."""
        serial = issuer = subject = sha256 = None
        crtsh_id: int | None = None
        pem: str | None = None
        width = len(row)
        for i, kind in self.plan or ():
            if i >= width:
                break
            value = row[i]
            if not value or value.isspace():
                continue
            if kind == _SERIAL_HEX:
                serial = _hex_serial(value)
            elif kind == _ISSUER:
                issuer = value.strip()
            elif kind == _DOMAINS:
                dns.extend(_domains(value))
            elif kind == _SHA256:
                sha256 = _sha256(value)
            elif kind == _CRTSH:
                crtsh_id, from_url = _crtsh(value)
                sha256 = sha256 or from_url
            elif kind == _SERIAL_DEC:
                serial = _decimal_serial(value)
            elif kind == _SUBJECT:
                subject = value.strip()
            elif kind == _PEM:
                pem = value
        return serial, issuer, subject, sha256, crtsh_id, pem

    def _from_pem(self, pem: str, line: int, crtsh_id: int | None) -> Item:
        match = _PEM_BEGIN_RE.search(pem)
        if match is None:
            return RejectedLine(line, "", "certificate column holds no PEM block", self.source)
        body = pem[match.end() :].split("-----END", 1)[0]
        body = "".join(part for part in body.split() if ":" not in part)
        try:
            der = binascii.a2b_base64(body)
        except (binascii.Error, ValueError) as exc:
            return RejectedLine(
                line, "", f"certificate column is not valid base64: {exc}", self.source
            )
        return self.reader.record(der, line, self.source, crtsh_id)

    @staticmethod
    def _sniff(
        row: list[str], dns: list[str]
    ) -> tuple[str | None, str | None, str | None, int | None, str | None]:
        serial = issuer = sha256 = pem = None
        crtsh_id: int | None = None
        unknown: list[str] = []
        for value in row:
            cell = value.strip()
            if not cell:
                continue
            low = cell.lower()
            if "crt.sh" in low:
                crtsh_id, from_url = _crtsh(cell)
                sha256 = sha256 or from_url
            elif "-----BEGIN" in cell:
                pem = cell
            elif "=" in cell:
                issuer = cell
            elif _looks_like_hex(cell):
                compact = cell.translate(_SERIAL_SEPARATORS)
                if len(compact) == 64 and sha256 is None:
                    sha256 = compact.lower()
                elif serial is None:
                    serial = _hex_serial(cell)
                else:
                    raise ValueError(
                        "several values look like serials; add a header line naming the columns"
                    )
            elif _DOMAIN_RE.fullmatch(low.rstrip(".")):
                dns.append(low)
            elif all(_DOMAIN_RE.fullmatch(d) for d in _domains(cell)):
                dns.extend(_domains(cell))
            else:
                unknown.append(cell)
        if serial is None and sha256 is None and crtsh_id is None and pem is None and unknown:
            raise ValueError(
                f"{_show(unknown[0])} is not a serial, SHA-256 fingerprint or crt.sh URL"
            )
        return serial, issuer, sha256, crtsh_id, pem


def _with_domains(item: CertRecord, extra: list[str]) -> CertRecord:
    names = tuple(dict.fromkeys((*item.dns_names, *extra)))
    return CertRecord(
        item.sha256,
        item.serial,
        item.issuer,
        item.subject,
        names,
        item.not_before,
        item.not_after,
        item.precertificate,
        item.crtsh_id,
        item.line,
        item.source,
    )


def _choose_delimiter(sample: list[str]) -> str:
    """The candidate found the same non-zero number of times on most sample lines."""
    best, best_score = ",", -1
    for delimiter in ("\t", ";", ","):
        counts = [line.count(delimiter) for line in sample]
        nonzero = [c for c in counts if c]
        if not nonzero:
            continue
        common = max(set(nonzero), key=nonzero.count)
        score = nonzero.count(common) * 2 + len(nonzero)
        if score > best_score:
            best, best_score = delimiter, score
    return best


_MAYBE_SKIP = frozenset({"", "#", " ", "\t", "\r"})


def _iter_rows(
    lines: _Lines, head: str, source: str, limits: ListLimits, reader: _CertReader
) -> Iterator[AnyItem]:
    sample = [
        ln for ln in head.splitlines()[:21] if ln.strip() and not ln.lstrip().startswith("#")
    ][:20]
    # The header line alone decides when there is one: data lines may hold
    # issuer DNs full of commas in a semicolon-separated file.
    first = sample[0] if sample else ""
    header_delims = [d for d in ("\t", ";", ",") if d in first]
    header_cells = first.split(header_delims[0]) if header_delims else [first]
    has_header = any(_column_kind(c) is not None for c in header_cells)
    delimiter = (
        max(("\t", ";", ","), key=first.count)
        if has_header and header_delims
        else _choose_delimiter(sample)
    )
    # Process-wide setting (csv has no per-reader one); the default limits keep
    # it at csv's own default order of magnitude.
    csv.field_size_limit(limits.max_field_chars)
    rows = csv.reader(lines, delimiter=delimiter)
    parser: _RowParser | None = None
    previous = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            start = previous + 1
            yield from lines.overlong
            lines.overlong.clear()
            yield RejectedLine(start, "", f"lines {start}–{rows.line_num}: {exc}", source)
            previous = rows.line_num
            continue
        line = previous + 1
        previous = rows.line_num
        if lines.overlong:
            yield from lines.overlong
            lines.overlong.clear()
        if not row:
            continue
        first_cell = row[0]
        if first_cell[:1] in _MAYBE_SKIP and (
            (len(row) == 1 and not first_cell.strip()) or first_cell.lstrip()[:1] == "#"
        ):
            continue
        if len(row) > limits.max_columns:
            yield RejectedLine(
                line,
                _clip(delimiter.join(row[:50])),
                f"line has {len(row):,} columns, more than {limits.max_columns}",
                source,
            )
            continue
        if parser is None:
            columns = [_column_kind(c) for c in row] if has_header else None
            if columns is not None and not any(c is not None for c in columns):
                columns = None  # the first row was data after all
            if columns is not None:
                parser = _RowParser(columns, source, reader)
                if not _IDENTIFYING.intersection(c for c in columns if c is not None):
                    yield RejectedLine(
                        line,
                        _clip(delimiter.join(row)),
                        "header names no serial, fingerprint, crt.sh id or certificate column;"
                        " reading the lines by their content",
                        source,
                    )
                    parser = _RowParser(None, source, reader)
                continue
            parser = _RowParser(None, source, reader)
        yield parser.parse(row, line, delimiter)
    yield from lines.overlong
    lines.overlong.clear()
