"""What a CA mail's S/MIME result means for people: the phrase for receipts, the alert to staff.

The contract: a CA contact's mail with an `invalid`, `untrusted` or `expired`
signature is still recorded in its incident, with that result, and staff are
told; so is an `encrypted` one the bot has no key to open. A signer whose
certificate names another e-mail address than the From is flagged too.
"""

from __future__ import annotations

import logging

from sqlmodel import Session

from bot.compose.alerts import alert_staff
from bot.context import Context
from bot.decide.classify import ROLE_CA, Classification
from bot.parse.smime.verify import SmimeResult
from bot.service.analysis import Analysis
from storage.models import Event, InboundMessage

log = logging.getLogger("rootnotify.decide.signatures")

# Results a person must look at: the mail was recorded, but its signature
# cannot be relied on (or the bot could not even open it).
ALERT_STATUSES = frozenset({"invalid", "untrusted", "expired", "encrypted"})

_PHRASES = {
    "valid": "signed, signature valid",
    "unsigned": "NOT signed",
    "invalid": "signature invalid",
    "untrusted": "signed, but the signer is not trusted",
    "expired": "signed, but the signer's certificate was not valid at the time",
    "encrypted": "encrypted, and we hold no key to open it",
}


def signature_phrase(result: SmimeResult) -> str:
    """One receipt line: "signed, signature valid (…)", "NOT signed", "signature invalid: …"."""
    phrase = _PHRASES.get(result.status, result.status)
    if result.status == "valid":
        if result.signer_subject:
            phrase += f" (signer: {result.signer_subject})"
    elif result.status not in ("unsigned", "encrypted") and result.reason:
        phrase += f": {result.reason}"
    notes = []
    if result.from_mismatch:
        notes.append("the signer's certificate does not name the From address")
    if result.weak_digest:
        notes.append(f"weak digest {result.digest_algorithm}")
    return phrase + (f" [{'; '.join(notes)}]" if notes else "")


def needs_alert(result: SmimeResult) -> bool:
    return result.status in ALERT_STATUSES or (result.status != "unsigned"
                                                and result.from_mismatch)


def alert_on_signature(session: Session, ctx: Context, inbound: InboundMessage,
                       analysis: Analysis, cls: Classification) -> None:
    """After a CA mail was acted on: tell staff when its signature cannot be relied on."""
    result = analysis.smime
    if cls.role != ROLE_CA or not needs_alert(result):
        return
    incident_id = inbound.incident_id
    what = signature_phrase(result)
    if incident_id:
        session.add(Event(incident_id=incident_id, at=inbound.received_at,
                          kind=f"smime-{result.status}", inbound_id=inbound.id,
                          summary=f"{cls.kind} from {analysis.message.from_address}: {what}"))
    headline = result.status if result.status in ALERT_STATUSES else "signer is not the sender"
    where = f"in {incident_id}" if incident_id else "outside any incident"
    kept = ("It was recorded, but its content could not be read; the raw message is kept. "
            "Configure [outgoing] decryption_key so such mail can be opened."
            if result.status == "encrypted"
            else f"It was recorded as {cls.kind!r} with S/MIME result {result.status!r}.")
    alert_staff(session, ctx,
                subject=f"S/MIME {headline}: mail from {cls.ca.name if cls.ca else 'a CA'}",
                body=(f"A mail from {analysis.message.from_address} {where} has an S/MIME "
                      f"result that needs a person:\n\n  {what}\n\n{kept}\n\n"
                      f"Subject: {analysis.message.subject}\n"
                      f"Message-ID: {analysis.message.message_id}\n"
                      f"Reason given by the verifier: {result.reason}\n"),
                incident_id=incident_id, inbound_id=inbound.id)
    log.info("message %s from %s: S/MIME %s; staff alerted", inbound.id,
             analysis.message.from_address, result.status)
