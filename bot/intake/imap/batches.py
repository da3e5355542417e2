"""A pass's new UIDs cut into batches, by count (`batch_size`) and by size (BATCH_MAX_BYTES)."""

from __future__ import annotations

from imapclient import IMAPClient

# A batch also stops growing at this many bytes, so 50 large attachments are
# not held in memory at once; up to 10 batches are in flight in a pass
# (bot/intake/imap/onepass.py: 4 waiting, 4 being committed, 2 being fetched), so
# this keeps a backlog of big mail near 40 MiB. A single larger message is
# fetched alone.
BATCH_MAX_BYTES = 4 * 1024 * 1024


def cut_batches(client: IMAPClient, uids: list[int], batch_size: int) -> list[list[int]]:
    """`uids` cut into batches of `batch_size` and at most BATCH_MAX_BYTES.

    A message of at most BATCH_MAX_BYTES / batch_size octets cannot take a
    full batch over the cap, so only larger ones need their size: one
    SEARCH LARGER for the pass (usually finding none) instead of an
    RFC822.SIZE fetch of every message, which was a round trip and ~12%
    of intake's time per batch.
    """
    size = max(1, batch_size)
    small = BATCH_MAX_BYTES // size
    large = set(client.search(["UID", f"{uids[0]}:{uids[-1]}", "LARGER", str(small)]))
    sizes: dict[int, int] = {}
    wanted = [u for u in uids if u in large]
    if wanted:
        sizes = {uid: int(item.get(b"RFC822.SIZE", small))
                 for uid, item in client.fetch(wanted, [b"RFC822.SIZE"]).items()}
    batches: list[list[int]] = []
    batch: list[int] = []
    total = 0
    for uid in uids:
        octets = sizes.get(uid, small)
        if batch and (len(batch) >= size or total + octets > BATCH_MAX_BYTES):
            batches.append(batch)
            batch, total = [], 0
        batch.append(uid)
        total += octets
    if batch:
        batches.append(batch)
    return batches
