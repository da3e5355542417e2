"""A large signed certificate list: verified in place, every row stored, one altered byte caught.

The story of issue 14 at a testable size: the CA replies in the thread with
one S/MIME-signed mail (`openssl cms -sign`) carrying a base64 CSV of 40,000
`serial,issuer` rows (~3 MB, past the size from which the signed part is
hashed and parsed where it lies in the raw message). The receipt says the
signature is valid and counts every row. The same mail with one byte of the
signed part changed, deep inside the attachment, is still recorded, but its
signature is invalid. In a child process, analysing a signed list holds no
copy of it: tracemalloc's peak stays far below the message's size.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import hashes

from bot.parse.smime import stream as smime_stream
from bot.parse.smime.locate import content_forms
from bot.parse.smime.stream import STREAM_MIN_BYTES, form_digests
from bot.parse.smime.verify import verify_message
from tests.harness import CA_CONTACT, free_port, write_config
from tests.smime_factory import AT, Identity, make_ca, make_signer, openssl_sign, pem
from tests.story import send, show
from tests.test_smime_e2e import headers, inbound, requested, smime_bot

ROWS = 40_000
ISSUER = "CN=Example Issuing CA 2,O=Example CA Ltd,C=GB"
# The signed mail is ~3.5 MB; the test bot's usual 1 MiB limit would refuse it.
MAX_MESSAGE_SIZE = 8 << 20
B64_LINE = 76  # base64.encodebytes: 76 characters, 57 bytes, a line


def serial_csv(rows: int = ROWS) -> bytes:
    rng = random.Random(14)
    lines = ["serial,issuer"] + [f'{rng.getrandbits(144):036x},"{ISSUER}"' for _ in range(rows)]
    return ("\r\n".join(lines) + "\r\n").encode()


def list_entity(csv_data: bytes) -> bytes:
    """What the CA signs: a note and the list as a base64 CSV attachment, CRLF throughout."""
    b = "large-list-boundary-14"
    encoded = base64.encodebytes(csv_data).replace(b"\n", b"\r\n")
    return ((f'Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n'
            f"--{b}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"The list is attached.\r\n"
            f"--{b}\r\nContent-Type: text/csv; name=misissued.csv\r\n"
            f"Content-Disposition: attachment; filename=misissued.csv\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n").encode() + encoded
            + f"--{b}--\r\n".encode())


def tamper_one_byte(signed: bytes, csv_data: bytes) -> bytes:
    """`signed` with one base64 letter changed in the middle of the list (past the first MiB).

    The letter is picked so that the list still decodes to valid rows, one
    serial altered: the bytes the signature covers change, the list does not break.
    """
    encoded = base64.encodebytes(csv_data).replace(b"\n", b"\r\n")
    body_at = signed.index(encoded[:B64_LINE * 4])
    line = len(csv_data) // 57 * 3 // 4  # three quarters in: well past the first slice
    for group in range(B64_LINE // 4):
        decoded = csv_data[line * 57 + group * 3: line * 57 + group * 3 + 3]
        if all(c in b"0123456789abcdef" for c in decoded):
            break
    else:
        raise AssertionError("no all-hex group on that line")
    at = body_at + line * (B64_LINE + 2) + group * 4
    old = signed[at:at + 4]
    assert base64.b64decode(old) == decoded
    # Keep the first two base64 letters, change the third: a different hex digit.
    new = next(g for c in b"0123456789abcdef"
               if (g := base64.b64encode(decoded[:1] + bytes([c]) + decoded[2:])) != old)
    tampered = signed[:at] + new + signed[at + 4:]
    assert sum(a != b for a, b in zip(tampered, signed, strict=True)) == 1
    return tampered


@pytest.fixture(scope="module")
def signed_list(tmp_path_factory: pytest.TempPathFactory) -> tuple[Identity, bytes, bytes]:
    """(the CA's S/MIME root, the signed list mail, the CSV in it)."""
    tmp = tmp_path_factory.mktemp("large-list")
    ca_smime = make_ca("Example CA S/MIME CA", slot=41)
    signer = make_signer(ca_smime, CA_CONTACT, slot=42)
    csv_data = serial_csv()
    signed = openssl_sign(tmp, signer, list_entity(csv_data), headers=headers("INC-2026-0001"))
    return ca_smime, signed, csv_data


def test_a_signed_large_list_is_verified_in_place_and_every_row_stored(tmp_path, signed_list):
    ca_smime, signed, csv_data = signed_list
    with smime_bot(tmp_path, ca_smime, max_message_size=MAX_MESSAGE_SIZE) as (bot, sink):
        inc = requested(bot, sink)
        assert inc == "INC-2026-0001"
        send(bot, signed)
        receipt = sink.wait_for(sink.to(CA_CONTACT, "Certificate list recorded"))[-1]
        assert receipt.recipients == [CA_CONTACT]
        assert "Signature of the list: signed, signature valid" in receipt.body
        assert f"{ROWS:,} certificate row(s) read: {ROWS:,} new certificate(s) recorded" \
            in receipt.body
        data = show(bot, inc)
        assert data["certificates"]["count"] == ROWS
        assert inbound(data)[-1]["smime"] == "valid"
        assert inbound(data)[-1]["kind"] == "certificate-list"

        send(bot, tamper_one_byte(signed, csv_data))
        receipt = sink.wait_for(sink.to(CA_CONTACT, "Certificate list recorded"), count=2)[-1]
        assert "Signature of the list: signature invalid" in receipt.body
        assert f"{ROWS:,} certificate row(s) read: 1 new certificate(s) recorded" in receipt.body
        data = show(bot, inc)
        assert inbound(data)[-1]["smime"] == "invalid"
        assert "message digest mismatch" in inbound(data)[-1]["smime_reason"]
        assert inbound(data)[-1]["kind"] == "certificate-list"
        # Recorded all the same: the altered serial is one more certificate.
        assert data["certificates"]["count"] == ROWS + 1


def test_the_signed_part_is_handed_on_as_a_view_into_the_message(signed_list):
    ca_smime, signed, _ = signed_list
    result = verify_message(signed, anchors=[ca_smime.cert], at=AT, from_address=CA_CONTACT)
    assert result.status == "valid", result.reason
    assert isinstance(result.content, memoryview) and result.content_span is not None
    start, end = result.content_span
    assert end - start >= STREAM_MIN_BYTES and result.content == signed[start:end]
    assert signed[start:].startswith(b"Content-Type: multipart/mixed")


@pytest.mark.parametrize("slice_bytes", [1, 2, 3, 7, 64])
def test_sliced_digests_are_those_of_the_whole_forms(monkeypatch, slice_bytes):
    # Line ends split across slices are where a sliced canonicalisation goes wrong.
    monkeypatch.setattr(smime_stream, "SLICE_BYTES", slice_bytes)
    rng = random.Random(slice_bytes)
    for _ in range(400):
        content = bytes(rng.choice(b"ab\r\n") for _ in range(rng.randrange(0, 30)))
        wanted = [hashlib.sha256(form).digest() for form in content_forms(content)]
        # The same digests; the order differs (content_forms tries the likelier first).
        assert sorted(form_digests(content, hashes.SHA256())) == sorted(wanted), content


# Run in a child so that nothing the test process allocated before counts.
_MEASURE = """
import json, sys, tracemalloc
from datetime import datetime
from pathlib import Path
from bot.service.analysis import analyze
from bot.config import load_config
from bot.trust import load_trust
config = load_config(Path(sys.argv[1]))
trust = load_trust(config)
raw = Path(sys.argv[2]).read_bytes()
tracemalloc.start()
analysis = analyze(raw, config, trust, received_at=datetime.fromisoformat(sys.argv[3]),
                   envelope_from=None)
peak = tracemalloc.get_traced_memory()[1]
lists = [(a.filename, a.size) for a in analysis.certificate_lists]
print(json.dumps({"peak": peak, "smime": analysis.smime.status, "lists": lists}))
"""


def test_analysing_a_signed_list_holds_no_copy_of_it(tmp_path):
    # Four times the story's list (~19 MB): a copy stands well clear of the slices.
    ca_smime = make_ca("Example CA S/MIME CA", slot=41)
    signer = make_signer(ca_smime, CA_CONTACT, slot=42)
    csv_data = serial_csv(4 * ROWS)
    signed = openssl_sign(tmp_path, signer, list_entity(csv_data),
                          headers=headers("INC-2026-0001"))
    path = write_config(tmp_path, smtp_port=free_port(), relay_port=free_port(),
                        max_message_size=4 * MAX_MESSAGE_SIZE)
    (tmp_path / "exampleca-smime.pem").write_bytes(pem(ca_smime.cert))
    anchors = 'smime_anchors = ["exampleca-smime.pem"]\n'
    path.write_text(path.read_text().replace('name = "Example CA"\n',
                                             f'name = "Example CA"\n{anchors}', 1))
    (tmp_path / "list.eml").write_bytes(signed)
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path), str(tmp_path / "list.eml"),
                           AT.isoformat()], capture_output=True, check=False, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    measured = json.loads(done.stdout)
    assert measured["smime"] == "valid"
    assert measured["lists"] == [["misissued.csv", len(csv_data)]]
    # A copy of the signed part (split out, canonicalised, or the list decoded
    # whole) is about the message's size; the slices and the skeleton are ~3 MiB.
    assert measured["peak"] < len(signed) // 4, (measured["peak"], len(signed))
