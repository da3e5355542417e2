"""The exception tree of rootnotify, and its mapping to SMTP replies.

    RootnotifyError
    ├── ConfigError                  the configuration is wrong; the program must not start
    ├── OperatorError                a command cannot do what it was asked (a port in use,
    │                                a folder not writable, no such message): one line, exit 1
    ├── IntakeError                  a message could not be taken in
    │   ├── RecipientRefused         permanent: 550 5.1.1
    │   └── StoreUnavailable         temporary: 451 (the sender will retry)
    ├── ProcessingError              a stored message could not be processed
    │   ├── TemporaryProcessingError retried with backoff
    │   │   └── AnalysisAborted      parsing killed its process or outran its time
    │   └── PermanentProcessingError parked for a person at once
    ├── LimitExceeded                hostile or oversized input hit a named limit
    ├── CommandError                 a staff command is unknown or malformed
    └── DeliveryError                the relay did not take an outgoing mail
        ├── TemporaryDeliveryError   4xx or no connection: retry with backoff
        └── PermanentDeliveryError   5xx: failed, staff told

A message over max_message_size is refused by aiosmtpd itself (552, its
data_size_limit) and by file ingest and the IMAP poller with a reason line,
so no exception of ours stands for it.

Temporary and permanent failures are kept apart so that every caller can
decide between "retry later" and "a person must look" without string checks.
"""

from __future__ import annotations


class RootnotifyError(Exception):
    """Base of every error rootnotify raises on purpose."""


class ConfigError(RootnotifyError):
    """A configuration key is missing or wrong. The message names the key and the file."""


class OperatorError(RootnotifyError):
    """What an operator asked for cannot be done; the message says what and why, in one line."""


class IntakeError(RootnotifyError):
    smtp_reply = "451 4.3.0 Temporary failure, try again later"


class RecipientRefused(IntakeError):
    smtp_reply = "550 5.1.1 No such recipient here"


class StoreUnavailable(IntakeError):
    smtp_reply = "451 4.3.0 Message not stored, try again later"


class ProcessingError(RootnotifyError):
    """A stored message failed a processing step."""


class TemporaryProcessingError(ProcessingError):
    """Worth retrying: the database was busy, a resource was missing for a while."""


class AnalysisAborted(TemporaryProcessingError):
    """Parsing this message crashed its child process or did not end in time.

    Retried like any failure (an out-of-memory kill may not recur), and parked
    after the last attempt; the worker never parses it in its own process.
    """


class PermanentProcessingError(ProcessingError):
    """Retrying will not help; the message is parked for a person."""


class LimitExceeded(RootnotifyError):
    """Input passed a named limit (size, parts, depth, ratio …)."""

    def __init__(self, limit: str, value: int | float, maximum: int | float) -> None:
        super().__init__(f"{limit}: {value} exceeds the limit of {maximum}")
        self.limit = limit
        self.value = value
        self.maximum = maximum


class CommandError(RootnotifyError):
    """A staff command that is unknown or malformed; the text is shown to the sender."""


class DeliveryError(RootnotifyError):
    """The relay did not accept an outgoing mail."""


class TemporaryDeliveryError(DeliveryError):
    pass


class PermanentDeliveryError(DeliveryError):
    pass


def smtp_reply_for(error: BaseException) -> str:
    """The one place where an exception becomes an SMTP status line."""
    if isinstance(error, IntakeError):
        return error.smtp_reply
    return "451 4.3.0 Local error in processing, try again later"
