"""The documentation cannot drift from the code: the generated parts (every stage's `--help`,
every config key of the schema) are current, every stage has a page naming all of its rules,
and every relative link resolves."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_generated_docs_are_current():
    result = subprocess.run(
        [sys.executable, "scripts/update_docs.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
