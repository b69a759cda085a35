"""Evaluation of one model on one lm-evaluation-harness task, with provenance.

Tasks are lm-eval's own (MMLU medical subsets, medqa_4options) or the project's task folder
``src/cft/evaluation/lm_eval_tasks`` (FinBen classification tasks with weighted/macro F1, the demo
suites). One call scores one (domain, model, run, task), a run being the base model (``chat``)
or one training run (``{method}/seed{seed}``), and writes
``results/eval/{domain}/{model}/{run}/{task}.json``: the task's metrics (``acc``,
``weighted_f1``, ...), the number of samples, and how they were obtained (backend, dtype, batch
size, few-shot, chat template, seeds, versions, model fingerprint, wall time).

    python -m cft.evaluation.evaluate --domain biomed --model smollm2-135m-instruct --method chat \\
        --task demo_knowledge_biomed
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
from cft.core.grid import CellKey
from cft.core.io import atomic_path, check_output, file_sha256, write_json
from cft.core.logging_utils import setup_logging
from cft.core.methods import UNTRAINED
from cft.core.paths import eval_json, model_dir, samples_path
from cft.core.provenance import package_versions, provenance
from cft.core.settings import evaluation_settings_hash, stage_provenance, stage_settings
from cft.evaluation import EvaluationError
from cft.evaluation.harness import SEEDS, evaluate, metrics_of, placement
from cft.evaluation.task_folders import PROJECT, protocol_task, task_dirs
from cft.evaluation.task_index import check_task, task_manager
from cft.evaluation.weights import check_weights, load_checked_model

log = logging.getLogger(__name__)


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
    """Evaluate and write the record to ``out_json`` and lm-eval's per-sample log to
    ``samples_jsonl`` (default: beside it, ``{task}.samples.jsonl``)."""
    samples_jsonl = check_output(samples_jsonl or samples_path(out_json))
    check_output(out_json)  # before the work, not after
    lm_task = protocol_task(config, task)
    dirs = task_dirs(config)
    check_task(lm_task, task_manager(lm_task, dirs=dirs), dirs)  # named before the weights load
    # The weights are read once: hashed against the recorded fingerprint and checked for NaN
    # (a NaN model would score as if it knew nothing) as they are loaded; vLLM reads the files
    # itself, so there they are checked in a pass of their own.
    start = time.perf_counter()
    where = placement(config["evaluation"], f"evaluation of {model_dir} on {task}")
    loaded = None
    if where.backend == "hf":
        loaded, fingerprint = load_checked_model(Path(model_dir), where.dtype, where.device)
    else:
        fingerprint = check_weights(Path(model_dir))
    results, arguments = evaluate(
        config, task, Path(model_dir), where=where, model=loaded,
        template_kwargs=model_setting(config, model, "chat_template_kwargs"), domain=domain,
    )  # fmt: skip
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
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "wall_seconds": time.perf_counter() - start,
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
    parser.add_argument("--task", required=True)
    parser.add_argument("--seed", type=int, help="training run (default: the first seed)")
    parser.add_argument("--model-dir", help="default: the trained model, or the base model")
    parser.add_argument("--out", help="default: the workflow's eval record path")
    args = parser.parse_args(argv)
    setup_logging()
    config = stage_config(args)
    seed = None if args.method == UNTRAINED else args.seed
    if seed is None and args.method != UNTRAINED:
        seed = training_seeds(config)[0]
    run(
        config,
        args.domain,
        args.model,
        args.method,
        args.task,
        model_dir=model_folder(
            args.model_dir or model_dir(args.domain, args.model, args.method, seed), "--model-dir"
        ),
        out_json=Path(args.out or eval_json(args.domain, args.model, args.method, seed, args.task)),
        seed=seed,
    )


if __name__ == "__main__":
    main()
