"""Whether a staff member's mail may command: the configured authentication, as a table.

`[staff] auth` names the check: `smime` (a valid signature chained to a
configured staff certificate, by a certificate naming the sender), `dkim` (a
DKIM pass aligned with the sender's domain; the DNS lookup is the context's,
so tests need no network) or `none` (the operator's choice: the address is
enough).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from bot.context import Context
from bot.service.analysis import Analysis
from bot.service.dkim import dkim_verdict
from storage.models import InboundMessage
from storage.rawstore import load_raw


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    reason: str
    # What the signature proves beyond "who" (bot.decide.staff.replay checks it):
    # its identity (one digest per signature value), when it was made, and the
    # text it covers.
    signature_digests: tuple[str, ...] = ()
    signed_at: datetime | None = None
    signed_text: str = ""


Check = Callable[[Session, Context, InboundMessage, Analysis], AuthResult]


def _smime(session: Session, ctx: Context, inbound: InboundMessage,
           analysis: Analysis) -> AuthResult:
    # analysis.smime of a staff sender was verified against the staff certificates only.
    result = analysis.smime
    if result.status != "valid":
        return AuthResult(False, f"S/MIME {result.status}: {result.reason}")
    if result.from_mismatch:
        return AuthResult(False, f"signed by {', '.join(result.signer_emails) or 'someone'}, "
                                 f"not by the sender {analysis.message.from_address}")
    return AuthResult(True, f"S/MIME valid ({result.signer_subject})",
                      signature_digests=result.signature_digests,
                      signed_at=result.signing_time, signed_text=analysis.body_text)


def _dkim(session: Session, ctx: Context, inbound: InboundMessage,
          analysis: Analysis) -> AuthResult:
    sender = analysis.message.from_address or ""
    domain = sender.rpartition("@")[2]
    if ctx.dkim_dns is None:
        from dkim.dnsplug import get_txt  # the real DNS, only when nothing was injected

        dnsfunc = get_txt
    else:
        dnsfunc = ctx.dkim_dns
    verdict = dkim_verdict(load_raw(session, inbound.id or 0), domain, dnsfunc)
    # DKIM covers the Subject (required in h=) as well as the body.
    return AuthResult(verdict.passed, verdict.reason,
                      signature_digests=(verdict.signature_digest,)
                      if verdict.signature_digest else (),
                      signed_at=verdict.signed_at,
                      signed_text=f"{analysis.message.subject}\n{analysis.body_text}")


def _none(session: Session, ctx: Context, inbound: InboundMessage,
          analysis: Analysis) -> AuthResult:
    return AuthResult(True, "no authentication configured ([staff] auth = none)")


CHECKS: dict[str, Check] = {"smime": _smime, "dkim": _dkim, "none": _none}


def authenticate(session: Session, ctx: Context, inbound: InboundMessage,
                 analysis: Analysis) -> AuthResult:
    return CHECKS[ctx.config.staff.auth](session, ctx, inbound, analysis)
