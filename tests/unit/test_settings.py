"""Each stage's code digest covers every module of the package its jobs run: the modules it
names, and those they import (at any depth, lazily included), found from the import
statements; its data folders too."""

from __future__ import annotations

import shutil

import pytest

from cft.core.settings import PACKAGE_DIR, STAGES, code_digest, code_files, imported_names


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("package") / "cft"
    shutil.copytree(PACKAGE_DIR, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_editing_any_file_a_stage_runs_changes_its_digest(stage, package_copy):
    files = code_files(stage, package_copy)
    before = code_digest.__wrapped__(stage, package_copy)
    for path in files:
        original = path.read_bytes()
        path.write_bytes(original + b"\n# edited\n")
        try:
            assert code_digest.__wrapped__(stage, package_copy) != before, path
        finally:
            path.write_bytes(original)
    assert code_digest.__wrapped__(stage, package_copy) == before


def test_a_lazy_import_inside_a_function_is_followed(tmp_path):
    root = tmp_path / "cft"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "helper.py").write_text("X = 1\n")
    (root / "sub").mkdir()
    (root / "sub" / "__init__.py").write_text("from . import deep\n")
    (root / "sub" / "deep.py").write_text("from ..helper import X\n")
    (root / "stage.py").write_text("def run():\n    from cft.sub.deep import X\n    return X\n")
    assert imported_names(root / "stage.py", "cft.stage") == {"cft.sub.deep", "cft.sub.deep.X"}
    assert imported_names(root / "sub" / "deep.py", "cft.sub.deep") == {
        "cft.helper",
        "cft.helper.X",
    }
    assert imported_names(root / "sub" / "__init__.py", "cft.sub") == {"cft.sub", "cft.sub.deep"}


def test_the_evaluation_digest_covers_the_helpers_that_change_its_results():
    """The hand-kept list of the past named evaluation.py, shared_context.py and the task
    folder: the FinBen protocol's task choice and the dtype decision were left out."""
    names = {str(p.relative_to(PACKAGE_DIR)) for p in code_files("evaluate")}
    assert {
        "evaluation/evaluate.py",
        "evaluation/shared_context.py",
        "evaluation/task_folders.py",
        "core/devices.py",
    } <= names
    assert "evaluation/lm_eval_tasks/finben/utils.py" in names
