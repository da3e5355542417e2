"""Moving stored mail aside on the server: MOVE, else COPY + \\Deleted + UID EXPUNGE."""

from __future__ import annotations

import imaplib
import logging

from imapclient import IMAPClient

from bot.intake.imap.connection import error_text
from bot.intake.imap.onepass import uid_set

log = logging.getLogger("rootnotify.intake.imap")

DELETED = b"\\Deleted"


def not_yet_moved(client: IMAPClient, last_uid: int, can_move: bool) -> list[int]:
    """The UIDs up to `last_uid` still in the folder: stored by an earlier pass, not moved."""
    criteria: list[str] = ["UID", f"1:{last_uid}"]
    if not can_move and not client.has_capability("UIDPLUS"):
        # Copied and flagged, never expunged (see move_to): not again each pass.
        criteria += ["NOT", "DELETED"]
    return sorted(u for u in client.search(criteria) if u <= last_uid)


def move_to(client: IMAPClient, uids: list[int], target: str, use_move: bool,
            peer: str) -> None:
    # One UID set, with ranges for consecutive UIDs: a short command line
    # however large the batch (imapclient would list every UID).
    which = uid_set(uids)
    if use_move:
        client.move(which, target)
        return
    client.copy(which, target)
    client.add_flags(which, [DELETED], silent=True)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(which)
    else:
        # Without UID EXPUNGE a plain EXPUNGE would also remove mail that
        # others flagged \Deleted; the copies are safe, so leave these
        # flagged (last_uid keeps us from taking them again).
        log.warning("%s: no UIDPLUS; %d message(s) copied and flagged \\Deleted, "
                    "not expunged", peer, len(uids))


def ensure_folder(client: IMAPClient, folder: str, peer: str) -> None:
    if client.folder_exists(folder):
        return
    try:
        client.create_folder(folder)
        log.info("%s: created folder %r", peer, folder)
    except imaplib.IMAP4.error as exc:
        if "ALREADYEXISTS" not in error_text(exc).upper():
            raise
