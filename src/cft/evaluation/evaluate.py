"""Evaluation of one model on lm-evaluation-harness tasks, with provenance.

Tasks are lm-eval's own (MMLU medical subsets, medqa_4options) or the project's task folder
``src/cft/evaluation/lm_eval_tasks`` (FinBen classification tasks with weighted/macro F1, the demo
suites). One call scores one model of a domain, a run being the base model (``chat``) or one
training run (``{method}/seed{seed}``), on one or more tasks, in one process (the weights read
and the model opened once), and writes one record per task,
``results/eval/{domain}/{model}/{run}/{task}.json``: the task's metrics (``acc``,
``weighted_f1``, ...), the number of samples, and how they were obtained (backend, dtype, batch
size, few-shot, chat template, seeds, versions, model fingerprint, task data, wall time). The
workflow runs one such job per evaluated model over its domain's suite (``--keep-current``:
a record still current is kept, so a change to one task rescores that task alone).

    python -m cft.evaluation.evaluate --domain biomed --model smollm2-135m-instruct --method chat \\
        --task demo_knowledge_biomed demo_knowledge_biomed_cloze
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from cft.core.cli import model_folder, stage_config, stage_parser
from cft.core.config import model_setting, training_seeds
from cft.core.fingerprints import recorded_fingerprint
from cft.core.grid import CellKey
from cft.core.io import atomic_path, check_output, file_sha256, read_json, write_json
from cft.core.logging_utils import setup_logging
from cft.core.methods import UNTRAINED
from cft.core.paths import model_dir, run_eval_dir, run_name, samples_path, task_record
from cft.core.provenance import package_versions, provenance
from cft.core.settings import (
    evaluation_settings_hash,
    stage_digest,
    stage_provenance,
    stage_settings,
)
from cft.evaluation import EvaluationError
from cft.evaluation.harness import SEEDS, Backend, evaluate, metrics_of, open_backend, placement
from cft.evaluation.task_folders import PROJECT, protocol_task, task_dirs, task_inputs
from cft.evaluation.task_index import check_task, task_manager
from cft.evaluation.weights import check_weights, load_checked_model

log = logging.getLogger(__name__)


def task_data_sha256(config: dict, domain: str, task: str) -> dict[str, str | None]:
    """SHA-256 of each file the task's evaluation on ``domain`` reads (its data, or its hub
    data's download manifest; None for one not there): a record made from other data is not
    current."""
    return {
        path: file_sha256(path) if Path(path).is_file() else None
        for path in task_inputs(task, domain, task_dirs(config))
    }


def is_current(
    config: dict, domain: str, model: str, task: str, model_dir: Path, out_json: Path
) -> bool:
    """Whether the record at ``out_json`` (and its per-sample log) is what scoring ``task`` now
    would write: made with the same settings and code (the stage digest its rule reruns on),
    from the same model files (the folder's recorded fingerprint) and task data, with its
    per-sample log intact."""
    samples = samples_path(out_json)
    if not (out_json.is_file() and samples.is_file()):
        return False
    try:
        record = read_json(out_json)
        return (
            record["provenance"]["stage_digest"]
            == stage_digest(config, "evaluate", model=model, task=task)
            and record["model_fingerprint"] == recorded_fingerprint(model_dir)
            and record["task_data_sha256"] == task_data_sha256(config, domain, task)
            and record["samples_sha256"] == file_sha256(samples)
        )
    except (ValueError, KeyError, TypeError):  # unreadable, or written before these fields
        return False


def run_tasks(
    config: dict,
    domain: str,
    model: str,
    method: str,
    records: dict[str, Path],
    *,
    model_dir: Path,
    seed: int | None = None,
    keep_current: bool = False,
    samples: dict[str, Path] | None = None,
) -> dict[str, dict]:
    """Score one model on several tasks in one process: the tasks named before anything loads,
    the weights read and checked once, the model opened once (one vLLM engine), then each
    task's record written as soon as it is scored. ``records``: task -> record path (its
    per-sample log beside it, :func:`~cft.core.paths.samples_path`). ``keep_current``: leave
    a record that :func:`is_current` as it is (the workflow's job, one per evaluated model,
    rerun because one task's settings or data changed, rescores that task alone). ``samples``:
    a task's per-sample log elsewhere than beside its record. Returns each task's record."""
    model_dir = Path(model_dir)
    logs = {task: samples_path(out) for task, out in records.items()} | (samples or {})
    for task, out_json in records.items():
        check_output(logs[task])
        check_output(out_json)  # before the work, not after
    todo = {task: Path(out) for task, out in records.items()}
    if keep_current:
        for task, out_json in records.items():
            if logs[task] == samples_path(out_json) and is_current(
                config, domain, model, task, model_dir, Path(out_json)
            ):
                log.info("%s: current (same settings, code, model and data), kept", out_json)
                del todo[task]
    done = {task: read_json(out) for task, out in records.items() if task not in todo}
    if not todo:
        log.info("%s/%s/%s: every record current, nothing scored", domain, model, method)
        return done
    dirs = task_dirs(config)
    for task in todo:  # every task named before the weights load
        lm_task = protocol_task(config, task)
        check_task(lm_task, task_manager(lm_task, dirs=dirs), dirs)
    # The weights are read once: hashed against the recorded fingerprint and checked for NaN
    # (a NaN model would score as if it knew nothing) as they are loaded; vLLM reads the files
    # itself, so there they are checked in a pass of their own.
    where = placement(config["evaluation"], f"evaluation of {model_dir} on {', '.join(todo)}")
    loaded = None
    if where.backend == "hf":
        loaded, fingerprint = load_checked_model(model_dir, where.dtype, where.device)
    else:
        fingerprint = check_weights(model_dir)
    template_kwargs = model_setting(config, model, "chat_template_kwargs")
    with open_backend(
        config, model_dir, where, model=loaded, template_kwargs=template_kwargs
    ) as backend:
        for task, out_json in todo.items():
            done[task] = score_task(
                config, domain, model, method, task, backend,
                model_dir=model_dir, fingerprint=fingerprint, out_json=out_json,
                samples_jsonl=logs[task], seed=seed,
            )  # fmt: skip
    log.info(  # after the backend closed (a vLLM engine shut down)
        "%s/%s/%s: %d task(s) scored, %d kept", domain, model, method, len(todo),
        len(records) - len(todo),
    )  # fmt: skip
    return {task: done[task] for task in records}


def score_task(
    config: dict,
    domain: str,
    model: str,
    method: str,
    task: str,
    backend: Backend,
    *,
    model_dir: Path,
    fingerprint: str,
    out_json: Path,
    samples_jsonl: Path,
    seed: int | None,
) -> dict:
    """Score one task on an opened model; write its per-sample log, then its record."""
    start = time.perf_counter()
    lm_task = protocol_task(config, task)
    results, arguments = evaluate(config, task, model_dir, domain=domain, backend=backend)
    if lm_task not in results["results"]:
        raise EvaluationError(f"lm-eval returned no result for task {lm_task!r}")
    record = {
        # the cell the record is of, as the tables group records (cft.core.grid.CellKey)
        **asdict(CellKey(domain, model, method, seed, task)),
        "lm_eval_task": lm_task,
        "metrics": metrics_of(results["results"][lm_task]),
        "n_samples": results.get("n-samples", {}).get(lm_task, {}),
        "task_version": results.get("versions", {}).get(lm_task),
        "lm_eval_arguments": arguments,
        "settings_hash": evaluation_settings_hash(config, model, task),
        "model_dir": str(model_dir),
        "model_fingerprint": fingerprint,
        "task_data_sha256": task_data_sha256(config, domain, task),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "wall_seconds": time.perf_counter() - start,  # this task's scoring (the load is shared)
        "provenance": stage_provenance(
            "evaluate",
            stage_settings(config, "evaluate", model=model, task=task),
            seed=SEEDS["random_seed"],
            backend=f"lm-eval/{arguments['backend']} on {arguments['device']}",
            lm_eval=package_versions(("lm_eval",))["lm_eval"],
        ),
    }
    if "samples" not in results or lm_task not in results["samples"]:
        raise EvaluationError(f"lm-eval returned no per-sample log for task {lm_task!r}")
    with atomic_path(samples_jsonl) as tmp:
        with tmp.open("w") as handle:
            for sample in results["samples"][lm_task]:
                handle.write(json.dumps(sample, default=str) + "\n")
        # the pair is two files; the record names its log's content, which the tables check
        record["samples_sha256"] = file_sha256(tmp)
    write_json(out_json, record)
    log.info("%s/%s/%s %s: %s", domain, model, method, task, record["metrics"])
    return record


def run(
    config: dict,
    domain: str,
    model: str,
    method: str,
    task: str,
    *,
    model_dir: Path,
    out_json: Path,
    samples_jsonl: Path | None = None,
    seed: int | None = None,
) -> dict:
    """Evaluate one task and write the record to ``out_json`` and lm-eval's per-sample log to
    ``samples_jsonl`` (default: beside it, ``{task}.samples.jsonl``)."""
    samples = {task: Path(samples_jsonl)} if samples_jsonl is not None else None
    return run_tasks(
        config, domain, model, method, {task: Path(out_json)},
        model_dir=model_dir, seed=seed, samples=samples,
    )[task]  # fmt: skip


def download_task(task: str, manifest: Path, dirs: tuple[Path, ...] = PROJECT) -> dict:
    """Fetch a task's datasets into the Hugging Face cache (HF_HOME) by building the task as
    lm-eval does, then write a manifest (dataset, splits and rows). ``dirs``: the task folders
    (:func:`~cft.evaluation.task_folders.task_dirs`)."""
    from lm_eval.tasks import get_task_dict

    manager = task_manager(task, dirs=dirs)
    check_task(task, manager, dirs)
    tasks = get_task_dict([task], manager)
    record = {"task": task, "datasets": {}}
    for name, task_object in tasks.items():
        dataset = getattr(task_object, "dataset", None)
        record["datasets"][str(name)] = {
            "dataset_path": task_object.config.dataset_path,
            "dataset_name": task_object.config.dataset_name,
            "splits": {split: len(rows) for split, rows in (dataset or {}).items()},
        }
    record["provenance"] = provenance({"task": task}, backend="download")
    write_json(manifest, record)
    log.info("%s: %s", task, record["datasets"])
    return record


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--task", required=True, nargs="+", help="one or more, scored in turn")
    parser.add_argument("--seed", type=int, help="training run (default: the first seed)")
    parser.add_argument("--model-dir", help="default: the trained model, or the base model")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", help="the record of a single --task")
    where.add_argument(
        "--out-dir", help="the folder of the tasks' records (default: the workflow's)"
    )
    parser.add_argument(
        "--keep-current",
        action="store_true",
        help="leave a task's record that is current (same settings, code, model files and "
        "data) as it is, as the workflow's evaluate job does",
    )
    args = parser.parse_args(argv)
    if args.out and len(args.task) > 1:
        parser.error(f"--out names one record; {len(args.task)} tasks: give --out-dir")
    setup_logging()
    config = stage_config(args)
    seed = None if args.method == UNTRAINED else args.seed
    if seed is None and args.method != UNTRAINED:
        seed = training_seeds(config)[0]
    run = run_name(args.method, seed)
    folder = args.out_dir or run_eval_dir(args.domain, args.model, run)
    records = {task: Path(args.out or task_record(folder, task)) for task in args.task}
    run_tasks(
        config,
        args.domain,
        args.model,
        args.method,
        records,
        model_dir=model_folder(
            args.model_dir or model_dir(args.domain, args.model, args.method, seed), "--model-dir"
        ),
        seed=seed,
        keep_current=args.keep_current,
    )


if __name__ == "__main__":
    main()
