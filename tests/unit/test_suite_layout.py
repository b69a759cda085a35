"""The fast suite stays fast: tests/conftest.py marks integration tests by their folder and their
fixtures, and refuses a test in tests/unit that loads a model (run on a scratch copy of the
layout, with the real conftest)."""

from __future__ import annotations

import shutil
import subprocess
import sys

from conftest import REPO

INTEGRATION_TEST = """
import pytest

@pytest.fixture
def tiny_model():
    return "a model"

def test_uses_a_model(tiny_model):
    assert tiny_model
"""

UNIT_TEST = """
def test_plain():
    assert True
"""


def run_layout(tmp_path, folder: str, source: str, *args: str):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "test_layout.py").write_text(source)
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_unit_test_that_loads_a_model_is_refused(tmp_path):
    result = run_layout(tmp_path, "unit", INTEGRATION_TEST)
    assert result.returncode != 0
    assert "move them to tests/integration" in result.stdout + result.stderr
    assert "test_uses_a_model uses tiny_model" in result.stdout + result.stderr


def test_integration_tests_are_marked_by_folder_and_fixture(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "test_fixture.py").write_text(INTEGRATION_TEST)
    result = run_layout(tmp_path, "integration", UNIT_TEST, "-m", "not integration")
    assert result.returncode == 5, result.stdout  # every test deselected: none left to run
    assert "2 deselected" in result.stdout
