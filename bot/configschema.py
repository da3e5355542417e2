"""The configuration's schema: every section's keys, their types and defaults (policy as data)."""

from __future__ import annotations

from typing import Any

from bot.parse.mail.limits import DEFAULT_LIMITS
from bot.rules.rulesets import DEFAULT_RULESET

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
