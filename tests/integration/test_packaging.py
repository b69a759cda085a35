"""The built wheel carries what the installed package reads at run time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

from conftest import REPO

from cft.core.settings import PACKAGE_DIR
from cft.evaluation.task_folders import TASKS_DIR


def test_the_wheel_contains_every_task_file_and_the_license(tmp_path):
    # a clean copy of the sources: a checkout's build/ and egg-info would hide a missing entry
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src",
                    ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), "-q"],
        check=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("cft-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    task_files = sorted(
        f"cft/{path.relative_to(PACKAGE_DIR).as_posix()}"
        for path in TASKS_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )
    assert len(task_files) >= 13  # the demo and FinBen tasks, templates and utils
    assert [name for name in task_files if name not in names] == []
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    modules = sorted(  # every module, the synthetic subpackage's included
        f"cft/{path.relative_to(PACKAGE_DIR).as_posix()}"
        for path in PACKAGE_DIR.rglob("*.py")
        if "__pycache__" not in path.parts
    )
    assert "cft/synthetic/loop.py" in modules
    assert [name for name in modules if name not in names] == []
