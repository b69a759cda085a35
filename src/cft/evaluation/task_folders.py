"""The project's lm-eval task folders (``src/cft/evaluation/lm_eval_tasks``): which YAML defines a
task, and the data the workflow writes for it.

A task whose data a rule writes names them in its own YAML, as lm-eval reads them:
``dataset_path`` (a folder in the hub layout) or ``dataset_kwargs.data_files``, relative to
the workflow's working directory and under ``results/``. The evaluation rule takes exactly
those paths as its input; every other task (lm-eval's own, and FinBen's hub sets) reads the
hub cache that the download rule fills. No rule knows a task by its name.

A task's YAML also names the score the tables report (``metadata.reported_metric``; accuracy
where it names none, as for lm-eval's own MMLU tasks)."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

from cft.core.errors import CftError
from cft.core.paths import RESULTS
from cft.core.yaml_files import TaskLoader, load_yaml

TASKS_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"


class TaskFileError(CftError, ValueError):
    """An lm-eval task YAML cannot be read, or contradicts itself; the message names it."""


def _read(path: Path) -> dict:
    try:
        spec = load_yaml(path.read_text(), TaskLoader)
    except yaml.YAMLError as err:
        raise TaskFileError(f"{path}: not a readable lm-eval task YAML ({err})") from None
    return spec if isinstance(spec, dict) else {}


def task_spec(path: Path) -> dict:
    """A task YAML with its ``include`` chain merged (the including file's keys win), as lm-eval
    merges them."""
    spec = _read(path)
    include = spec.pop("include", None)
    if include is None:
        return spec
    return task_spec((path.parent / include).resolve()) | spec


@functools.cache
def task_files(tasks_dir: Path = TASKS_DIR) -> dict[str, Path]:
    """{task name: its YAML} over the task folders under ``tasks_dir``."""
    found: dict[str, Path] = {}
    for path in sorted(Path(tasks_dir).rglob("*.yaml")):
        name = _read(path).get("task")
        if isinstance(name, str):
            found[name] = path
    return found


def local_data(task: str, tasks_dir: Path = TASKS_DIR) -> list[str]:
    """The files or folders under results/ that ``task`` reads; [] for a task that reads the
    hub (or is not one of the project's)."""
    path = task_files(tasks_dir).get(task)
    if path is None:
        return []
    spec = task_spec(path)
    named = [spec.get("dataset_path")]
    data_files = (spec.get("dataset_kwargs") or {}).get("data_files") or {}
    for files in data_files.values() if isinstance(data_files, dict) else [data_files]:
        named += files if isinstance(files, list) else [files]
    return [p for p in named if isinstance(p, str) and p.startswith(f"{RESULTS}/")]


def is_local(task: str, tasks_dir: Path = TASKS_DIR) -> bool:
    """Whether ``task`` reads data the workflow writes (else the hub cache)."""
    return bool(local_data(task, tasks_dir))


def protocol_task(config: dict, task: str, tasks_dir: Path = TASKS_DIR) -> str:
    """The lm-eval task that scores the suite's ``task``: a FinBen task's generative variant
    (``{task}_generative``) under ``evaluation.finben.protocol: generative``, else the task."""
    if config["evaluation"]["finben"]["protocol"] == "generative":
        variant = f"{task}_generative"
        if variant in task_files(tasks_dir):
            return variant
    return task


def secondary_metrics(task: str, tasks_dir: Path = TASKS_DIR) -> list[str]:
    """Scores the tables report beside the headline one, with intervals: the YAML's
    ``metadata.secondary_metrics`` (FinBen's generative protocol: accuracy, macro and micro
    F1, MCC, missing rate); none for other tasks."""
    path = task_files(tasks_dir).get(task)
    if path is None:
        return []
    return list((task_spec(path).get("metadata") or {}).get("secondary_metrics") or [])


DEFAULT_METRIC = "acc"


def reported_metric(task: str, tasks_dir: Path = TASKS_DIR) -> str:
    """The score a table reports for ``task``: its YAML's ``metadata.reported_metric`` (one of
    its ``metric_list``), or accuracy for a task that names none or is not one of the
    project's."""
    path = task_files(tasks_dir).get(task)
    if path is None:
        return DEFAULT_METRIC
    spec = task_spec(path)
    metric = (spec.get("metadata") or {}).get("reported_metric", DEFAULT_METRIC)
    listed = [entry.get("metric") for entry in spec.get("metric_list") or []]
    if listed and metric not in listed:
        raise TaskFileError(
            f"{path}: metadata.reported_metric {metric!r} is not one of its metric_list {listed}"
        )
    return metric
