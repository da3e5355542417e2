"""Digest a large signed content where it lies: the forms a signer may have hashed, slice by slice.

`smime_locate.content_forms` makes each candidate form (as given, canonical
CRLF) as a whole copy, which for a signed reply carrying a 1,000,000-row list
(~116 MB) is two more copies of the message. Here the content stays a view
into the raw message; one pass feeds the form as given straight to one hash
and a canonicalised slice at a time to another. The results are exactly the
digests of `content_forms`' forms, so every check after them is unchanged.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

# Contents from this size on are verified in place and handed on as a view;
# below it the copies cost nothing worth avoiding and the old path stays.
STREAM_MIN_BYTES = 1 << 20
# Bytes canonicalised at a time: the one transient copy the pass makes.
SLICE_BYTES = 1 << 20


def is_large(content: bytes | memoryview) -> bool:
    return len(content) >= STREAM_MIN_BYTES


def form_digests(content: bytes | memoryview, algorithm: hashes.HashAlgorithm) -> list[bytes]:
    """The digests of `content` as given and of its canonical CRLF form (once if they agree)."""
    view = memoryview(content)
    given = hashes.Hash(algorithm)
    canonical = hashes.Hash(algorithm)
    changed = False
    carry = b""
    for pos in range(0, len(view), SLICE_BYTES):
        chunk = view[pos : pos + SLICE_BYTES]
        given.update(chunk)
        piece = carry + chunk  # bytes: the one copy of the slice
        # A CR ending the slice may begin a CRLF split across two slices:
        # it is canonicalised with the next one.
        carry = b""
        if piece.endswith(b"\r") and pos + SLICE_BYTES < len(view):
            piece, carry = piece[:-1], b"\r"
        canon = piece.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        changed = changed or canon != piece
        canonical.update(canon)
    digests = [given.finalize()]
    if changed:
        digests.append(canonical.finalize())
    return digests
