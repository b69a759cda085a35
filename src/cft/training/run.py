"""Fine-tuning one (domain, model, method) on its packed blocks: transformers Trainer, FSDP2 on
GPUs (the package's docstring says what each part adds).

    python -m cft.training --config config/config.yaml --domain biomed \\
        --model smollm2-135m-instruct --method cft
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cft.core import paths
from cft.core.config import REPO_ROOT, training_seeds
from cft.core.fingerprints import METRICS_FILE, verified_fingerprint
from cft.core.io import check_output, publish, read_json, write_json
from cft.core.logging_utils import LOG_FORMAT, setup_logging
from cft.training import TrainingStopped
from cft.training.checkpoints import (
    ATTEMPTS_DIR,
    JOB_SPEC,
    StopOnSignal,
    attempt_records,
    begin_attempt,
    last_complete_checkpoint,
    prepare_checkpoint_dir,
    run_key,
    run_lock,
)
from cft.training.data import load_tokenized
from cft.training.launch import (
    BatchPlan,
    Parallelism,
    check_world,
    launch_command,
    parallelism_of,
    plan_batch,
    train_resources,
    world_size_of,
)
from cft.training.recipe import Job, Recipe

if TYPE_CHECKING:  # transformers is imported by the training processes only
    from cft.training.metrics import ModelShape, PrecisionProbe, Throughput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """Where this process stands in the job: its rank, the batch plan and the parallelism."""

    rank: int
    world: int
    plan: BatchPlan
    parallel: Parallelism


def place(job: Job) -> Placement:
    """This process's rank and the job's layout, checked against the job's resources."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    recipe = job.recipe
    check_world(job.label, job.model, job.resources, world, lora=recipe.lora.enabled)
    plan = plan_batch(recipe.global_batch_size, world, job.resources["per_device_batch_size"])
    launched = "LOCAL_RANK" in os.environ  # torchrun started this process
    parallel = parallelism_of(
        recipe, world, cuda=job.cuda, launched=launched, nodes=job.resources["nodes"]
    )
    return Placement(rank, world, plan, parallel)


@dataclass(frozen=True)
class Measured:
    """What :func:`train` measured and used before the final save, handed to :func:`finish`."""

    read_weights: bool  # this rank read the base model's weights from disk
    shape: ModelShape
    attn: str  # the attention implementation
    loss_chunk_rows: int | None  # tokens per chunk of the chunked loss; None: full logits
    resume: Path | None  # the checkpoint the run resumed from
    throughput: Throughput
    probe: PrecisionProbe
    eval_loss: float | None
    data_stats: dict  # the tokenize stage's record of the blocks
    wall_start: float  # perf_counter() at the job's start


def train(job: Job, callbacks=()) -> dict | None:
    """Train in this process (one rank of a torchrun job, or the only process). Returns the
    metrics record on the main process. ``callbacks``: extra TrainerCallbacks (the knowledge
    curves evaluate each checkpoint as it is saved)."""
    import torch
    from transformers import AutoTokenizer

    from cft.training import loss as chunked_loss
    from cft.training.metrics import ModelShape, PrecisionProbe, Throughput
    from cft.training.model import attention_implementation, load_model, with_lora
    from cft.training.trainer import make_trainer, training_arguments

    wall_start = time.perf_counter()
    recipe, where = job.recipe, place(job)
    checkpoint_dir = Path(job.checkpoint_dir)
    check_output(job.out_dir, directory=True)  # before the work, not after
    # The inputs are checked once per job, by rank 0: it alone reads the base model's weights,
    # and the other ranks wait for it at the barrier below (torchrun stops them if it fails).
    tokenized, data_stats = load_tokenized(job.tokenized_dir, verify=where.rank == 0)
    if where.rank == 0:
        base = verified_fingerprint(Path(job.base_model_dir))
        key = run_key(
            recipe.as_dict(), job.run_seed, data_stats["fingerprint"], base,
            where.plan.global_batch_size, where.world,
        )  # fmt: skip
        prepare_checkpoint_dir(checkpoint_dir, key)
    # transformers' TensorBoard callback takes its folder from the environment only.
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(checkpoint_dir / "tensorboard")

    attn = attention_implementation(recipe.attn_implementation, cuda=job.cuda)
    args = training_arguments(job, where.plan, where.parallel)
    model, read_weights = load_model(job, args, where.parallel, attn)
    shape = ModelShape.of(model)
    micro_batch_tokens = where.plan.per_device_batch_size * recipe.max_seq_len
    loss_chunk_rows = chunked_loss.for_job(model, recipe.chunked_loss, micro_batch_tokens)
    if recipe.lora.enabled:
        model = with_lora(model, recipe.lora)
    tokenizer = AutoTokenizer.from_pretrained(job.base_model_dir)
    throughput, probe = Throughput(), PrecisionProbe()
    pad_id = tokenizer.pad_token_id
    on_signal = StopOnSignal(recipe.checkpoint_on_signal)
    trainer = make_trainer(
        job, model, tokenized["train"], where.plan, where.parallel, args=args,
        callbacks=[throughput, probe, on_signal, *callbacks],
        pad_id=tokenizer.eos_token_id if pad_id is None else pad_id,
    )  # fmt: skip
    if where.world > 1:  # rank 0 may have just removed a different run's checkpoints
        torch.distributed.barrier()
    resume = last_complete_checkpoint(checkpoint_dir)
    attempt_log = None
    if where.rank == 0:  # this attempt's own log, kept with the run's others
        attempt_log = logging.FileHandler(begin_attempt(checkpoint_dir, resume))
        attempt_log.setFormatter(logging.Formatter(LOG_FORMAT))
        logging.getLogger().addHandler(attempt_log)
    try:
        log_start(job, tokenized["train"], where, attn, resume, loss_chunk_rows)
        with on_signal.installed():
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        if on_signal.stopped_at is not None:
            raise TrainingStopped(
                f"{job.label}: stopped by {on_signal.signal_name} after "
                f"saving {checkpoint_dir}/checkpoint-{on_signal.stopped_at}; rerun (or let "
                f"the retry run) to resume from it"
            )
        eval_loss = None
        if recipe.eval_at_end and "validation" in tokenized:
            eval_loss = trainer.evaluate(eval_dataset=tokenized["validation"])["eval_loss"]
        metrics = finish(job, trainer, tokenizer, where, Measured(
            read_weights=read_weights, shape=shape, attn=attn, resume=resume,
            loss_chunk_rows=loss_chunk_rows, throughput=throughput, probe=probe,
            eval_loss=eval_loss, data_stats=data_stats, wall_start=wall_start,
        ))  # fmt: skip
    finally:
        if attempt_log is not None:
            logging.getLogger().removeHandler(attempt_log)
            attempt_log.close()
    if metrics is not None and not recipe.keep_checkpoints:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return metrics


def log_start(
    job: Job, train_set, where: Placement, attn: str, resume: Path | None, chunk: int | None
) -> None:
    plan = where.plan
    layout = "FSDP2" if where.parallel.fsdp else ("DDP" if where.world > 1 else "one process")
    log.info(
        "%s: %d blocks of %d tokens; %d process(es) x micro-batch %d x %d accumulation = "
        "global batch %d; %s; attention %s; %s; %s",
        job.label, len(train_set), len(train_set[0]["input_ids"]), where.world,
        plan.per_device_batch_size, plan.gradient_accumulation_steps, plan.global_batch_size,
        layout, attn, f"loss in chunks of {chunk} tokens" if chunk else "full logits",
        f"resuming from {resume}" if resume else "from the start",
    )  # fmt: skip


def finish(job: Job, trainer, tokenizer, where: Placement, measured: Measured) -> dict | None:
    """Gather and save the final model (every rank takes part), then, on the main process,
    write the files beside it and the metrics record, and publish the folder."""
    import torch

    from cft.training.metrics import (
        RunFacts,
        gradient_reduction_dtype,
        live_mesh,
        metrics_record,
        peak_memory_mb,
    )
    from cft.training.model import save_final_model, write_run_files

    recipe, out_dir = job.recipe, Path(job.out_dir)
    device = trainer.args.device
    counts = [
        trainer.tokens_seen, trainer.loss_tokens_seen, trainer.attention_pairs,
        trainer.sliding_pairs,
    ]  # fmt: skip
    tokens = trainer.accelerator.reduce(torch.tensor(counts, device=device), "sum").tolist()
    readers = trainer.accelerator.gather(
        torch.tensor([int(measured.read_weights)], device=device)
    ).tolist()
    staging = out_dir.parent / f".{out_dir.name}.partial"
    if where.rank == 0 and staging.exists():
        shutil.rmtree(staging)
    if recipe.lora.enabled:
        trainer.model = trainer.model_wrapped = trainer.model.merge_and_unload()
    saved_dtype = job.config["models"][job.model].get("dtype", "float32")
    save_start = time.perf_counter()
    save_final_model(trainer, staging, saved_dtype)
    final_save_seconds = time.perf_counter() - save_start
    if not trainer.is_world_process_zero():
        return None

    checkpoint_dir = Path(job.checkpoint_dir)
    model_fingerprint, rows = write_run_files(
        staging, tokenizer, trainer.state.log_history, checkpoint_dir / "tensorboard"
    )
    probe, throughput, resume = measured.probe, measured.throughput, measured.resume
    sync_each_batch = trainer.accelerator.gradient_state.plugin_kwargs.get("sync_each_batch")
    precision = {
        "requested": job.config["training"]["precision"],
        "chosen": recipe.precision,
        "why": job.precision_reason or "set in config",
        **probe.record,
        "gradient_reduction": gradient_reduction_dtype(trainer, probe.record.get("master_weights")),
        "gradient_sync": "every micro-batch" if sync_each_batch else "last micro-batch",
        "saved_dtype": saved_dtype,
    }
    metrics = metrics_record(
        RunFacts(
            job=job, recipe=recipe, precision=precision,
            device_name=torch.cuda.get_device_name() if job.cuda else None,
            world=where.world, fsdp=where.parallel.fsdp, plan=where.plan,
            attn_implementation=measured.attn, shape=measured.shape,
            loss_chunk_rows=measured.loss_chunk_rows,
            weight_readers=readers, resumed_from=str(resume) if resume else None,
            optimizer_steps=trainer.state.global_step, steps_this_run=throughput.steps,
            tokens=tokens[0], loss_tokens=tokens[1], attention_pairs=tokens[2],
            sliding_pairs=tokens[3],
            loop_seconds=throughput.seconds - trainer.checkpoint_seconds,
            checkpoint_seconds=trainer.checkpoint_seconds,
            final_save_seconds=final_save_seconds,
            wall_seconds=time.perf_counter() - measured.wall_start,
            peak_memory_mb=peak_memory_mb(job.cuda),
            loss_rows=rows,
            eval_loss=measured.eval_loss, model_fingerprint=model_fingerprint,
            data_stats=measured.data_stats, device_mesh=live_mesh(trainer),
            attempts=attempt_records(checkpoint_dir),
        )
    )  # fmt: skip
    write_json(staging / METRICS_FILE, metrics)
    log.info(
        "%s: %d steps in %d attempt(s), final loss %s, %.0f tokens/s, MFU %s",
        job.label, trainer.state.global_step, len(metrics["attempts"]), metrics["final_loss"],
        metrics["tokens_per_s"] or 0, f"{metrics['mfu']:.1%}" if metrics["mfu"] else "n/a",
    )  # fmt: skip
    # every attempt's record and log (a failed one's too), with the model
    shutil.copytree(checkpoint_dir / ATTEMPTS_DIR, staging / ATTEMPTS_DIR)
    publish(staging, out_dir)
    return metrics


def launch(job: Job, command: list | None = None) -> dict | None:
    """Run a training job: in this process for one device, else through torchrun (and srun
    across nodes), with the job spec handed over as JSON next to the checkpoints.
    ``command``: another launcher than the resources' (the GPU check starts one GPU under
    torchrun, to train through FSDP2 as the cluster's jobs do)."""
    resources = job.resources
    plan_batch(
        Recipe.of(job.config).global_batch_size,
        world_size_of(resources),
        resources["per_device_batch_size"],
    )  # fail before starting any process
    command = command or launch_command(resources)
    with run_lock(Path(job.checkpoint_dir)):  # one live job per run, to its publish
        return _launch(job, command)


def _launch(job: Job, command: list) -> dict | None:
    if command == [sys.executable]:
        return train(job)
    spec = Path(job.checkpoint_dir) / JOB_SPEC
    spec.parent.mkdir(parents=True, exist_ok=True)
    job.save(spec)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    full = [*command, "-m", "cft.training", "--job", str(spec)]
    log.info("launching: %s", " ".join(full))
    if job.log_file:  # the workers' output goes to the rule's log too
        with open(job.log_file, "a") as sink:
            subprocess.run(full, check=True, env=env, stdout=sink, stderr=subprocess.STDOUT)
    else:
        subprocess.run(full, check=True, env=env)
    return read_json(Path(job.out_dir) / METRICS_FILE)


def main(argv: list[str] | None = None) -> None:
    from cft.core.cli import model_folder, stage_config, stage_parser
    from cft.core.grid import trained_methods

    parser = stage_parser(__doc__, domain_required=False)
    parser.add_argument("--job", help=argparse.SUPPRESS)  # a torchrun worker's job spec
    parser.add_argument("--model")
    parser.add_argument("--method")
    parser.add_argument(
        "--tokenized", help=f"default: {paths.tokenized_dir('{domain}', '{model}', '{method}')}"
    )
    parser.add_argument("--base-model", help=f"default: {paths.base_model_dir('{model}')}")
    parser.add_argument("--seed", type=int, help="training run (default: the first seed)")
    parser.add_argument("--out-dir", help="default: the workflow's model folder of the run")
    args = parser.parse_args(argv)
    setup_logging()
    if args.job:
        train(Job.load(Path(args.job)))
        return
    if not (args.domain and args.model and args.method):
        parser.error("--domain, --model and --method are required")
    config = stage_config(args)
    methods = trained_methods(config)
    if args.method not in methods:
        parser.error(
            f"--method {args.method!r} is not a trained method of grid.methods in {args.config}; "
            f"trained: {methods}"
        )
    seed = training_seeds(config)[0] if args.seed is None else args.seed
    base_model_dir = model_folder(
        args.base_model or paths.base_model_dir(args.model), "--base-model"
    )
    launch(
        Job(
            config=config,
            domain=args.domain,
            model=args.model,
            method=args.method,
            tokenized_dir=args.tokenized
            or paths.tokenized_dir(args.domain, args.model, args.method),
            base_model_dir=str(base_model_dir),
            out_dir=args.out_dir or paths.model_dir(args.domain, args.model, args.method, seed),
            checkpoint_dir=paths.checkpoint_dir(args.domain, args.model, args.method, seed),
            resources=train_resources(config, args.model),
            seed=seed,
        )
    )
