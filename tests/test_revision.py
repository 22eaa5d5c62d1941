"""iicrepro.revision: git's HEAD here; the recorded revision where the tree is a copy without .git."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from iicrepro import revision


def test_git_checkout_gives_the_sha():
    if not (revision.ROOT / ".git").exists():
        pytest.skip("not a git checkout (an installed copy): nothing to compare with")
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", revision.code_revision())


def test_copy_without_git_uses_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # git must not find an outer repo
    monkeypatch.delenv(revision.ENV, raising=False)
    assert revision.code_revision(tmp_path) == "unknown"
    monkeypatch.setenv(revision.ENV, "0123abcd")
    assert revision.code_revision(tmp_path) == "0123abcd (copy)"
