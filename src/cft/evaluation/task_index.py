"""The index lm-eval builds of its own tasks and the project's, narrowed to the folders that
define a job's task, and the check that a task name is known. Kept apart from
:mod:`cft.evaluation.task_folders`, which the stages' settings read without lm-eval."""

from __future__ import annotations

import difflib
import functools
from pathlib import Path

from cft.evaluation import EvaluationError
from cft.evaluation.task_folders import PROJECT


def builtin_task_folders(names: tuple[str, ...]) -> list[Path]:
    """The top-level folders of lm-eval's own tasks whose YAML files mention one of ``names``:
    a superset of those that define them. A text search, ~20x cheaper than parsing them all."""
    import lm_eval.tasks

    root = Path(lm_eval.tasks.__file__).parent
    needles = [name.encode() for name in names]
    folders = set()
    for path in root.rglob("*.yaml"):
        top = path.relative_to(root).parts[0]
        if top not in folders and any(needle in path.read_bytes() for needle in needles):
            folders.add(top)
    return [root / top for top in sorted(folders)]


def task_manager(*tasks: str, dirs: tuple[Path, ...] = PROJECT, metadata: tuple = ()):
    """lm-eval's index of its own tasks and those of ``dirs`` (the project's folder, and
    ``evaluation.task_paths``: :func:`~cft.evaluation.task_folders.task_dirs`); with
    ``tasks``, of the folders that define them only. lm-eval's full index parses ~14k YAML
    files (10 s of CPU, in every evaluation job); the folders holding a task give the same
    task, as its YAML and includes are read by path. Any name that the narrow index does not
    hold as a task (a group, a tag, a Python task, a typo) gets the full index. Cached: the
    knowledge curves evaluate every checkpoint in one process. ``metadata``: (key, value) pairs
    lm-eval hands every task it builds (:func:`~cft.evaluation.task_folders.task_metadata`)."""
    # one cache key however the arguments were spelled (an evaluation job asks twice: before
    # the weights load, and in the harness with the task's metadata, often none)
    return _task_manager(tasks, tuple(dirs), tuple(metadata))


@functools.cache
def _task_manager(tasks: tuple[str, ...], dirs: tuple[Path, ...], metadata: tuple):
    from lm_eval.tasks import TaskManager

    if tasks:
        folders = [*builtin_task_folders(tasks), *dirs]  # the project's and the user's last
        narrow = TaskManager(
            include_path=[str(f) for f in folders],
            include_defaults=False,
            metadata=dict(metadata) or None,
        )
        if set(tasks) <= set(narrow.all_subtasks):
            return narrow
    return TaskManager(include_path=[str(f) for f in dirs], metadata=dict(metadata) or None)


def check_task(name: str, manager, dirs: tuple[Path, ...] = PROJECT) -> None:
    if name not in manager.all_tasks:
        close = difflib.get_close_matches(name, manager.all_tasks, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise EvaluationError(
            f"unknown lm-eval task {name!r} in evaluation.suites: neither an lm-eval task nor "
            f"one of the task folders {', '.join(str(d) for d in dirs)} (the project's and "
            f"evaluation.task_paths){hint}"
        )
