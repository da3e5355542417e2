"""What an outgoing mail's status is, from what became of each of its recipients.

The rule (README, "Deploying"): a mail is `failed` when none of its To
recipients has it for good, each bounced or refused for good (so also when
it reached none of its recipients); a Cc copy that got through does not make
it `sent`, since the mail was for the To (the acknowledgement is for the
contact who notified). While some recipient is still to be retried it stays
`queued`, so that retry still happens; otherwise it is `sent`. Who exactly
failed and who is retried stays beside it (`failed_recipients`,
`retry_recipients`; `show --json`: `failed_to`, `retrying_to`).
"""

from __future__ import annotations

from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from storage.models import OUT_FAILED, OUT_QUEUED, OUT_SENT, OutboundMessage, comma_list

# compose() writes the header block first and short; this much always holds it.
HEADER_BYTES = 65536


def addressed_to(row: OutboundMessage) -> list[str]:
    """The To recipients of `row`, read from the bytes we sent.

    The stored bytes are the mail as handed to the relay, so their To header
    is the record of whom it was for; no column repeats it. Only addresses
    the mail was sent to count, and when none can be read every recipient
    is taken as addressed (the rule is then "reached none of them").
    """
    recipients = comma_list(row.recipients)
    headers = BytesHeaderParser(policy=compat32).parsebytes(row.data[:HEADER_BYTES])
    values = [str(make_header(decode_header(v))) for v in headers.get_all("To", [])]
    to = {addr.lower() for _name, addr in getaddresses(values) if addr}
    return [r for r in recipients if r in to] or recipients


def mail_status(row: OutboundMessage) -> str:
    """`queued`, `sent` or `failed` for `row`, by the rule above."""
    if comma_list(row.retry_recipients):
        return OUT_QUEUED
    failed = set(comma_list(row.failed_recipients))
    return OUT_FAILED if failed >= set(addressed_to(row)) else OUT_SENT
