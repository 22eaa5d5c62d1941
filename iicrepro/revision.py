"""The code revision a run or a benchmark records (provenance of every number in the book).

git's HEAD, with "-dirty" when the code (package, notebooks, pyproject) has uncommitted changes. Where the
tree is not a git checkout (a copy sent to a GPU machine), IICREPRO_CODE_REVISION says what it is a copy of
(tools/device_prepare.sh writes it from git here); without either the revision is "unknown".
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE_PATHS = ("iicrepro", "notebooks", "pyproject.toml")  # what "-dirty" looks at
ENV = "IICREPRO_CODE_REVISION"


def code_revision(root: Path | None = None) -> str:
    """HEAD's sha (+ "-dirty"), else $IICREPRO_CODE_REVISION (+ " (copy)"), else "unknown"."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root or ROOT, capture_output=True, text=True,
                              check=True).stdout
    try:
        sha = git("rev-parse", "HEAD").strip()
        dirty = git("status", "--porcelain", "--", *CODE_PATHS).strip()
    except (OSError, subprocess.CalledProcessError):
        given = os.environ.get(ENV, "").strip()
        return f"{given} (copy)" if given else "unknown"
    return sha + ("-dirty" if dirty else "")
