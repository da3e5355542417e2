"""Where the test corpora live: our own under tests/mailcorpus, the shared one beside the clone.

The project's own corpus (`tests/mailcorpus`, made by the scripts there) is
always present. The shared third-party corpus (`../shared/corpus`, or
`$ROOTNOTIFY_CORPUS`) is an extra check where it exists: tests that need it
carry the `shared_corpus` mark and are not collected without it (see
tests/conftest.py), so a fresh clone neither fails nor skips them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CORPUS = Path(
    os.environ.get("ROOTNOTIFY_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)
OWN_CORPUS = Path(__file__).resolve().parent / "mailcorpus"

shared_corpus = pytest.mark.shared_corpus


def shared_corpus_present() -> bool:
    return CORPUS.is_dir()


def corpus_file(relative: str) -> Path:
    """The shared corpus file at `relative`, or skip the test saying why."""
    path = CORPUS / relative
    if not path.is_file():
        pytest.skip(f"corpus file {relative} not found under {CORPUS}")
    return path


def corpus_files(folder: str, pattern: str = "*.eml") -> list[Path]:
    """All shared corpus files in `folder` matching `pattern` (empty when it is absent)."""
    base = CORPUS / folder
    return sorted(base.glob(pattern)) if base.is_dir() else []


def own_files(folder: str, pattern: str = "*.eml") -> list[Path]:
    """Our own corpus's files in `folder` (tests/mailcorpus), always present."""
    return sorted((OWN_CORPUS / folder).glob(pattern))


def every_file(folder: str, pattern: str = "*.eml") -> list[Path]:
    """Our own files in `folder`, then the shared corpus's where it is present."""
    return own_files(folder, pattern) + corpus_files(folder, pattern)
