"""The modules a stage's jobs import at run time are all in its code digest: Python's own
record of what an import loaded (sys.modules) against the digest's import-statement closure,
so a module loaded another way (importlib, a plugin) would fail here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

from cft.core.settings import PACKAGE_DIR, STAGES, code_files

PROBE = """
import importlib, json, pkgutil, sys
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    if hasattr(module, "__path__"):  # a package: the stage runs all of its modules
        for info in pkgutil.walk_packages(module.__path__, name + "."):
            if not info.name.endswith(".__main__"):  # it would run the command line
                importlib.import_module(info.name)
print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items()
                        if n.split(".")[0] == "cft" and getattr(m, "__file__", None))))
"""


@pytest.mark.parametrize("code", sorted({stage.code for stage in STAGES.values()}))
def test_every_module_a_stage_loads_is_in_its_digest(code):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *code], capture_output=True, text=True, timeout=300,
        cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = {str(p) for p in json.loads(result.stdout.splitlines()[-1])}
    stages = [name for name, stage in STAGES.items() if stage.code == code]
    for stage in stages:
        covered = {str(p) for p in code_files(stage)}
        assert loaded - covered == set(), f"{stage}: loaded but not in its digest"
    assert all(p.startswith(str(PACKAGE_DIR)) for p in loaded)
