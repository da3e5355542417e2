"""The named limits on the shape of an incoming mail, with the reason for each default.

A mail past a limit is still stored and processed: what lies beyond the limit
is not read, and the parser records which limit was passed (see
`bot.parse.mail.message.parse_message`). The values are configurable under
`[limits]` (bot/config.py); these are the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.parse.mail.archives import DEFAULT_ARCHIVE_LIMITS, ArchiveLimits

# The contract's [smtp] max_message_size default (25 MiB); ingest and the
# parser apply the configured value too.
DEFAULT_MAX_MESSAGE_BYTES = 26_214_400
# A notification with a signed PDF, a .docx and a zipped certificate list has
# about 10 parts; mailing-list digests reach a few hundred. 500 parts leave
# room for both and keep a 10,000-part mail from costing a second of decoding.
DEFAULT_MAX_PARTS = 500
# signed → mixed → alternative → related is depth 4; a forwarded signed mail
# doubles it. Python's parser recurses once per level (several stack frames
# each), so depths in the hundreds are only useful to exhaust the stack.
DEFAULT_MAX_DEPTH = 20
# Real mail has 20–80 header fields; long Received chains of big providers
# stay under 200. 1,000 bounds the header list kept per message.
DEFAULT_MAX_HEADERS = 1_000
# RFC 5322 2.1.1: a line MUST be no more than 998 characters. Senders break
# this (base64 without line breaks in a header is common in spam); 8 KiB
# keeps them readable and stops a megabyte-long single line.
DEFAULT_MAX_HEADER_LINE = 8_192
# A CA sends a form, a report and a few certificate lists; 100 attachments is
# far more than any real incident mail carries.
DEFAULT_MAX_ATTACHMENTS = 100


@dataclass(frozen=True)
class MessageLimits:
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_parts: int = DEFAULT_MAX_PARTS
    max_depth: int = DEFAULT_MAX_DEPTH
    max_headers: int = DEFAULT_MAX_HEADERS
    max_header_line: int = DEFAULT_MAX_HEADER_LINE
    max_attachments: int = DEFAULT_MAX_ATTACHMENTS
    archive: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS


DEFAULT_LIMITS = MessageLimits()
