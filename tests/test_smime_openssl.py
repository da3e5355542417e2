"""S/MIME made by the openssl command line alone: rootnotify's verdict, and openssl's beside it.

The cases (tests/mailcorpus/smime_openssl.py) are signed and encrypted by
`openssl cms` and `openssl smime` with a PKI `openssl req`/`x509` made:
detached, opaque, with and without certificates, a chain carried or not, an
anchor of the same name but another key, a receipt after the signer
expired, tampered content and a flipped signature byte, an encrypted mail.
Each gets the verdict a person who knows the PKI expects, and `openssl cms
-verify` is run on it too: rootnotify says `valid` exactly where openssl
accepts.
"""

from __future__ import annotations

import shutil

import pytest

from bot.parse.smime.verify import load_certificates, verify_message
from tests.mailcorpus.smime_openssl import Case, build, openssl_verdict

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="the openssl command line is not installed")


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Case]:  # type: ignore[no-untyped-def]
    return {case.name: case for case in build(tmp_path_factory.mktemp("smime-openssl"))}


NAMES = ["cms-detached", "cms-opaque", "smime-detached", "smime-opaque", "cms-sha512",
         "chain-carried", "chain-missing", "other-root-same-name", "expired-at-receipt",
         "no-certificates", "tampered-content", "opaque-flipped-byte", "encrypted-no-key"]


def test_every_case_is_checked(cases):
    assert sorted(cases) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_rootnotify_gives_the_expected_verdict_and_openssl_agrees(cases, name):
    case = cases[name]
    anchors = [c for path in case.anchors for c in load_certificates(path.read_bytes())]
    result = verify_message(case.path.read_bytes(), anchors=anchors, at=case.at,
                            from_address="incidents@exampleca.test")
    assert result.status == case.expected, result.reason
    assert "\n" not in result.reason
    if case.openssl_accepts is not None:
        assert openssl_verdict(case) is case.openssl_accepts
        assert (result.status == "valid") is case.openssl_accepts
