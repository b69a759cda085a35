"""The lm-eval task folders beside lm-eval's own: the project's
(``src/cft/evaluation/lm_eval_tasks``) and a user's (``evaluation.task_paths``): which YAML
defines a task, and the data the workflow writes for it.

A task whose data a rule writes names them in its own YAML, as lm-eval reads them:
``dataset_path`` (a folder in the hub layout) or ``dataset_kwargs.data_files``, relative to
the workflow's working directory and under ``results/``. The evaluation rule takes exactly
those paths as its input; every other task (lm-eval's own, and FinBen's hub sets) reads the
hub cache that the download rule fills. No rule knows a task by its name.

A task's YAML also names the score the tables report (``metadata.reported_metric``, else the
first metric of its ``metric_list``; accuracy for lm-eval's own tasks, as its MMLU tasks).
A user's task enters a job's settings by the digest of its files (:func:`task_fingerprint`):
editing its YAML reruns its evaluations and no other."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import yaml

from cft.core.config import resolve_path
from cft.core.errors import CftError
from cft.core.paths import RESULTS, corpus_table, eval_data_manifest
from cft.core.yaml_files import TaskLoader, load_yaml

TASKS_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"
PROJECT = (TASKS_DIR,)


def task_dirs(config: dict) -> tuple[Path, ...]:
    """The task folders of a config: the project's, then ``evaluation.task_paths``."""
    return (TASKS_DIR, *(resolve_path(p) for p in config["evaluation"]["task_paths"]))


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
def task_files(dirs: tuple[Path, ...] = PROJECT) -> dict[str, Path]:
    """{task name: its YAML} over the task folders under each of ``dirs``; a name defined in
    two folders is an error naming both."""
    found: dict[str, Path] = {}
    for tasks_dir in dirs:
        for path in sorted(Path(tasks_dir).rglob("*.yaml")):
            name = _read(path).get("task")
            if not isinstance(name, str):
                continue
            if name in found and found[name].parent != path.parent:
                raise TaskFileError(
                    f"{path}: task {name!r} is also defined by {found[name]}; rename one "
                    f"(evaluation.task_paths)"
                )
            found[name] = path
    return found


def _include_chain(path: Path) -> list[Path]:
    chain = [path]
    include = _read(path).get("include")
    if include is not None:
        chain += _include_chain((path.parent / include).resolve())
    return chain


def task_fingerprint(task: str, dirs: tuple[Path, ...]) -> dict[str, str] | None:
    """SHA-256 of each file a user's task is made of: its YAML, the files it includes and the
    Python hooks beside it (``!function utils.f``); None for the project's and lm-eval's own
    tasks, whose files the stages' code digest covers."""
    path = task_files(dirs).get(task)
    if path is None or path.is_relative_to(TASKS_DIR):
        return None
    files = {*_include_chain(path), *path.parent.glob("*.py")}
    return {
        str(f.relative_to(path.parent.parent)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(files)
    }


def local_data(task: str, dirs: tuple[Path, ...] = PROJECT) -> list[str]:
    """The files or folders on disk that ``task`` reads: under results/ (a rule writes them),
    or a user's own (a path with a folder or a suffix that exists, relative to the workflow's
    folder); [] for a task that reads the hub (or is lm-eval's own)."""
    path = task_files(dirs).get(task)
    if path is None:
        return []
    spec = task_spec(path)
    named = [spec.get("dataset_path")]
    data_files = (spec.get("dataset_kwargs") or {}).get("data_files") or {}
    for files in data_files.values() if isinstance(data_files, dict) else [data_files]:
        named += files if isinstance(files, list) else [files]
    return [p for p in named if isinstance(p, str) and _on_disk(p)]


def _on_disk(name: str) -> bool:
    """A dataset path a task reads from disk (``json``, a builder, and ``org/set``, a hub id,
    are not files here)."""
    if name.startswith(f"{RESULTS}/"):
        return True
    path = Path(name)
    return ("/" in name or bool(path.suffix)) and resolve_path(path).exists()


def is_local(task: str, dirs: tuple[Path, ...] = PROJECT) -> bool:
    """Whether ``task`` reads data the workflow writes or the user's own (else the hub
    cache)."""
    return bool(local_data(task, dirs)) or corpus_split(task, dirs) is not None


def corpus_split(task: str, dirs: tuple[Path, ...] = PROJECT) -> str | None:
    """The split of the domain's own corpus that ``task`` scores (its YAML's
    ``metadata.corpus_split``: the held-out text task), or None for a task with data of its
    own."""
    path = task_files(dirs).get(task)
    if path is None:
        return None
    return (task_spec(path).get("metadata") or {}).get("corpus_split")


def check_corpus_tasks(config: dict, dirs: tuple[Path, ...]) -> None:
    """Refuse, before any job runs, a suite's held-out text that would score nothing
    (``corpus.validation_fraction`` 0) and a knowledge curve on it (the curves plot
    accuracy); the message names the key."""
    fraction = config["corpus"]["validation_fraction"]
    for domain, tasks in config["evaluation"]["suites"].items():
        for task in tasks or []:
            if corpus_split(task, dirs) == "validation" and fraction == 0:
                raise TaskFileError(
                    f"evaluation.suites.{domain} lists {task!r}, which scores the domain's "
                    f"held-out documents, but corpus.validation_fraction is 0: hold some out "
                    f"(e.g. 0.01), or drop {task!r} from the suite"
                )
    for domain, task in config["evaluation"]["curves"]["tasks"].items():
        if corpus_split(task, dirs) is not None:
            raise TaskFileError(
                f"evaluation.curves.tasks.{domain} = {task!r} scores the domain's corpus in "
                f"bits per byte; the knowledge curves plot a quiz's accuracy: name a quiz task"
            )


def task_data(task: str, domain: str, dirs: tuple[Path, ...] = PROJECT) -> list[str]:
    """The files on disk ``task`` reads when it scores ``domain``: the domain's corpus for a
    task that scores it (:func:`corpus_split`), else :func:`local_data`; [] for the hub."""
    if corpus_split(task, dirs) is not None:
        return [corpus_table(domain)]
    return local_data(task, dirs)


def task_inputs(task: str, domain: str, dirs: tuple[Path, ...] = PROJECT) -> list[str]:
    """The files an evaluation of ``task`` on ``domain`` depends on: :func:`task_data`, or the
    download manifest of its hub data (the rule download_eval_task writes it)."""
    return task_data(task, domain, dirs) or [eval_data_manifest(task)]


def task_metadata(task: str, domain: str | None, dirs: tuple[Path, ...] = PROJECT) -> dict:
    """What lm-eval hands a task beyond its YAML (the task manager's ``metadata``): the
    domain's corpus (``corpus``) for a task that reads one; {} for every other task."""
    if corpus_split(task, dirs) is None:
        return {}
    if domain is None:
        raise TaskFileError(
            f"{task_files(dirs)[task]}: task {task!r} scores a domain's corpus; evaluate it "
            f"for a domain (the evaluation stage's --domain)"
        )
    return {"corpus": corpus_table(domain)}


def protocol_task(config: dict, task: str) -> str:
    """The lm-eval task that scores the suite's ``task``: a FinBen task's generative variant
    (``{task}_generative``) under ``evaluation.finben.protocol: generative``, else the task."""
    if config["evaluation"]["finben"]["protocol"] == "generative":
        variant = f"{task}_generative"
        if variant in task_files(task_dirs(config)):
            return variant
    return task


def secondary_metrics(task: str, dirs: tuple[Path, ...] = PROJECT) -> list[str]:
    """Scores the tables report beside the headline one, with intervals: the YAML's
    ``metadata.secondary_metrics`` (FinBen's generative protocol: accuracy, macro and micro
    F1, MCC, missing rate); none for other tasks."""
    path = task_files(dirs).get(task)
    if path is None:
        return []
    return list((task_spec(path).get("metadata") or {}).get("secondary_metrics") or [])


DEFAULT_METRIC = "acc"


def reported_metric(task: str, dirs: tuple[Path, ...] = PROJECT) -> str:
    """The score a table reports for ``task``: its YAML's ``metadata.reported_metric`` (one of
    its ``metric_list``), else the first metric of its ``metric_list``; accuracy for a task
    that lists none or is lm-eval's own."""
    path = task_files(dirs).get(task)
    if path is None:
        return DEFAULT_METRIC
    spec = task_spec(path)
    listed = [entry.get("metric") for entry in spec.get("metric_list") or []]
    metric = (spec.get("metadata") or {}).get(
        "reported_metric", listed[0] if listed else DEFAULT_METRIC
    )
    if listed and metric not in listed:
        raise TaskFileError(
            f"{path}: metadata.reported_metric {metric!r} is not one of its metric_list {listed}"
        )
    return metric
