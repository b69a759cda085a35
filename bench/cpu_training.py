"""Benchmark: the project's Trainer against a bare PyTorch loop on the same blocks, on CPU.

Both run the same model on the same tokenized blocks (the tokenize stage's output) with the
same micro-batch, AdamW and gradient clipping, for the same number of optimizer steps; the
first ``--warmup`` steps are not timed. Runs, interleaved in this process so that the ratios
compare like with like on a shared, noisy machine:

- ``bare``: ``model(**batch).loss.backward()``, ``clip_grad_norm_``, fused ``AdamW.step()``;
- ``trainer``: ``cft.training.make_trainer`` with the job's own TrainingArguments (logging,
  token counting, the recipe's switches), checkpointing and TensorBoard off;

each in fp32 and with bf16 autocast over fp32 master weights (``precision: bf16``; by default
only on a CPU with AMX or AVX512-bf16, where bf16 is native: ``--precisions``), plus the
Trainer as it was before (fp32, AdamW's per-parameter loop). Printed: tokens/s of each, its
training FLOP/s (``cft.training.flops_per_token``: 6 per matmul parameter plus attention) and
their share of the machine's measured matmul peak in the same precision (a square matmul
timed in each round, best kept), the Trainer / bare-loop ratio per precision, bf16 / fp32,
and new default / previous default.

    .venv/bin/python bench/cpu_training.py --steps 10 --rounds 2
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def blocks(tokenized: str, batch: int, steps: int) -> list[dict]:
    """``steps`` micro-batches of ``batch`` blocks, cycling over the training blocks."""
    from datasets import load_from_disk

    from cft.training.data import collate_blocks

    rows = list(load_from_disk(tokenized)["train"])
    return [
        collate_blocks([rows[(step * batch + i) % len(rows)] for i in range(batch)])
        for step in range(steps)
    ]


def matmul_peak(precision: str, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of the best of ``repeats`` square matmuls in ``precision`` on this process's
    threads: what the same cores reach on the operation training is made of (the timing that
    ``precision: auto`` makes at a smaller size)."""
    import torch

    from cft.core.devices import matmul_flops

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    return matmul_flops(dtype, size, repeats)


def training_flops_per_token(model_dir: str, seq_len: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    from cft.training.metrics import ModelShape

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return ModelShape.of(model).flops_per_token(seq_len)


def bare_loop(
    model_dir: str, batches: list[dict], *, bf16: bool, lr: float, warmup: int, fused_adamw: bool
):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=fused_adamw)
    tokens = 0
    for step, batch in enumerate(batches):
        if step == warmup:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # the Trainer reads the loss each step too
        if step >= warmup:
            tokens += int(batch["attention_mask"].sum())
    return tokens / (time.perf_counter() - start)


def trainer_loop(
    config, tokenized, model_dir, *, precision: str, steps: int, warmup: int, fused_adamw: bool
):
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, TrainerCallback
    from transformers.training_args import OptimizerNames

    from cft.training.launch import parallelism_of, plan_batch, train_resources
    from cft.training.recipe import Job, Recipe
    from cft.training.trainer import make_trainer, training_arguments

    config = copy.deepcopy(config)
    config["training"]["precision"] = precision
    resources = train_resources(config, "bench")
    batch = resources["per_device_batch_size"]
    plan = plan_batch(batch, 1, batch)
    parallel = parallelism_of(Recipe.of(config), 1, cuda=False)

    class Timer(TrainerCallback):
        """Wall time from the end of the last warm-up step to the end of the last step: the
        Trainer's whole loop (data loading, logging, callbacks), not only its step bodies."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                self.start = time.perf_counter()
            self.seconds = time.perf_counter() - self.start if state.global_step > warmup else 0

    with tempfile.TemporaryDirectory() as scratch:
        job = Job(
            config, "bench", "bench", "cpt", tokenized, model_dir, scratch, scratch, resources
        )
        args = training_arguments(job, plan, parallel)
        args.max_steps, args.save_strategy, args.report_to = steps, "no", []
        if not fused_adamw:
            args.optim = OptimizerNames.ADAMW_TORCH
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        train_set = load_from_disk(tokenized)["train"]
        timer = Timer()
        trainer = make_trainer(job, model, train_set, plan, parallel, args=args, callbacks=[timer])
        trainer.train()
        seq = len(train_set[0]["input_ids"])
        return (steps - warmup) * batch * seq / timer.seconds


def main() -> None:
    from cft.core.config import load_config
    from cft.core.devices import native_bf16
    from cft.training.launch import train_resources

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--tokenized", default="results/tokenized/biomed/smollm2-135m-instruct/cpt")
    parser.add_argument("--model-dir", default="results/base_models/smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repeats, best kept")
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=["fp32", "bf16"],
        help="default: fp32, and bf16 where the CPU computes it natively (emulated bf16 "
        "matmuls run at ~1%% of fp32's speed: a step takes minutes)",
    )
    args = parser.parse_args()
    native, _ = native_bf16(cuda=False)
    precisions = args.precisions or (["fp32", "bf16"] if native else ["fp32"])
    config = load_config(args.config)
    batch = train_resources(config, "bench")["per_device_batch_size"]
    lr = config["training"]["learning_rate"]
    batches = blocks(args.tokenized, batch, args.steps)
    common = {"steps": args.steps, "warmup": args.warmup}
    # (path, precision, fused AdamW); the last is the Trainer as it was before this bench: fp32
    # with the per-parameter AdamW loop.
    runs = [
        run
        for run in [
            ("bare", "fp32", True),
            ("trainer", "fp32", True),
            ("bare", "bf16", True),
            ("trainer", "bf16", True),
            ("trainer", "fp32", False),
        ]
        if run[1] in precisions
    ]
    rates: dict[tuple, float] = {}
    peaks: dict[str, float] = {}
    # Interleaved rounds, best of each: the first run in a process pays one-off costs (thread
    # pools, allocator) and the machine is shared.
    for _ in range(args.rounds):
        for precision in precisions:
            peaks[precision] = max(peaks.get(precision, 0.0), matmul_peak(precision))
        for path, precision, fused in runs:
            if path == "bare":
                rate = bare_loop(
                    args.model_dir,
                    batches,
                    bf16=precision == "bf16",
                    lr=lr,
                    warmup=args.warmup,
                    fused_adamw=fused,
                )
            else:
                rate = trainer_loop(
                    config,
                    args.tokenized,
                    args.model_dir,
                    precision=precision,
                    fused_adamw=fused,
                    **common,
                )
            key = (path, precision, fused)
            rates[key] = max(rates.get(key, 0.0), rate)
    seq = batches[0]["input_ids"].shape[1]
    flops = training_flops_per_token(args.model_dir, seq)
    print(f"{args.steps - args.warmup} timed steps of {batch}x{seq} tokens; {args.tokenized}")
    print(f"training FLOPs per token: {flops / 1e9:.3f} G")
    for precision, peak in peaks.items():
        print(
            f"matmul peak ({precision}, 2048^3, this process's threads): {peak / 1e12:.3f} TFLOP/s"
        )
    print("| path | precision | AdamW | tokens/s | TFLOP/s | of the matmul peak |")
    print("|---|---|---|---|---|---|")
    for (path, precision, fused), rate in rates.items():
        adamw = "fused" if fused else "per-parameter loop"
        achieved = rate * flops
        print(
            f"| {path} | {precision} | {adamw} | {rate:,.0f} | {achieved / 1e12:.3f} | "
            f"{achieved / peaks[precision]:.0%} |"
        )
    for precision in precisions:
        ratio = rates[("trainer", precision, True)] / rates[("bare", precision, True)]
        print(f"trainer / bare loop ({precision}): {ratio:.2f}")
    new_default = "bf16" if "bf16" in precisions else "fp32"
    if len(precisions) == 2:
        bf16_vs_fp32 = rates[("trainer", "bf16", True)] / rates[("trainer", "fp32", True)]
        print(f"trainer bf16 / trainer fp32: {bf16_vs_fp32:.2f}")
    if "fp32" in precisions:
        before = rates[("trainer", "fp32", False)]
        print(
            f"new default ({new_default}, fused) / previous default (fp32, loop): "
            f"{rates[('trainer', new_default, True)] / before:.2f}"
        )
    print("precision auto picks bf16 here: {} ({})".format(*native_bf16(cuda=False)))


if __name__ == "__main__":
    main()
