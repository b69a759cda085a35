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
their share of the machine's matmul peak in the same precision (the best FLOP/s of square
matmuls and of the step's own matmul shapes, forward and backward, at one thread and at all
of them, in each round, best kept: no run may exceed it, else the bench fails), the Trainer /
bare-loop ratio per precision, bf16 / fp32, and new default / previous default.

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


SQUARE_SIZES = (1024, 2048, 4096)


def model_gemms(model_dir: str, tokens: int) -> list[tuple[int, int, int]]:
    """The (m, k, n) matmuls of one training step of the model on ``tokens`` tokens: each
    linear layer's forward (tokens x in -> out) and its two backward products (the input's
    gradient, tokens x out -> in; the weight's, in x tokens -> out), the LM head included."""
    from transformers import AutoConfig

    text = AutoConfig.from_pretrained(model_dir).get_text_config()
    hidden, inner, vocab = text.hidden_size, text.intermediate_size, text.vocab_size
    kv = text.num_key_value_heads * (getattr(text, "head_dim", None) or
                                     hidden // text.num_attention_heads)  # fmt: skip
    forward = {(tokens, hidden, out) for out in (hidden, kv, inner, vocab)}
    forward.add((tokens, inner, hidden))
    return sorted({shape for m, k, n in forward for shape in ((m, k, n), (m, n, k), (k, m, n))})


def matmul_peak(precision: str, shapes: list, repeats: int = 5) -> tuple[float, str]:
    """The machine's matmul peak in ``precision``: the best FLOP/s of any of ``shapes`` (m, k,
    n) at any thread count from one to this process's, each the best of ``repeats`` after a
    warm-up; and which (shape, threads) reached it. A training run made of these matmuls
    cannot beat it; one that did would show the peak is not one (the bench then fails)."""
    import torch

    from cft.core.devices import matmul_flops

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    threads = torch.get_num_threads()
    best, where = 0.0, ""
    try:
        for count in sorted({1, threads}):
            torch.set_num_threads(count)
            for m, k, n in shapes:
                flops = matmul_flops(dtype, repeats=repeats, shape=(m, k, n))
                if flops > best:
                    best, where = flops, f"{m}x{k} @ {k}x{n}, {count} thread(s)"
    finally:
        torch.set_num_threads(threads)
    return best, where


def copy_bandwidth(mib: int = 512, repeats: int = 5) -> float:
    """Bytes/s of the best of ``repeats`` copies of a ``mib`` MiB tensor (each byte read once and
    written once) at one thread and at all: the memory bandwidth a memory-bound operator can
    use here at most (a tensor far larger than the caches)."""
    import torch

    source = torch.ones(mib << 18)  # fp32: 4 bytes an element
    target = torch.empty_like(source)
    threads, best = torch.get_num_threads(), float("inf")
    try:
        for count in sorted({1, threads}):
            torch.set_num_threads(count)
            target.copy_(source)
            for _ in range(repeats):
                start = time.perf_counter()
                target.copy_(source)
                best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return 2 * source.numel() * source.element_size() / best


# Bytes an AdamW step must move per parameter whatever its implementation: read the gradient,
# the weight and both moments, write the weight and both moments (7 tensors of the master
# dtype), and read the gradient once more for the norm that clipping needs.
OPTIMIZER_TENSOR_PASSES = 8


def matmul_share_bound(
    flops_per_token: float,
    tokens: int,
    params: int,
    master_bytes: int,
    peak: float,
    bandwidth: float,
) -> float:
    """The largest share of the matmul peak any training step can reach, on this CPU, at this
    batch: its matmuls take at least their FLOPs at the peak, and its optimizer update, which
    cannot overlap them (each waits for the whole backward), at least its bytes at the copy
    bandwidth. Everything else a step does (activations, attention, the loss) only lowers it."""
    matmul_seconds = flops_per_token * tokens / peak
    optimizer_seconds = OPTIMIZER_TENSOR_PASSES * params * master_bytes / bandwidth
    return matmul_seconds / (matmul_seconds + optimizer_seconds)


def parameter_count(model_dir: str) -> int:
    """The model's parameters, tied ones once: what the optimizer updates."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return sum(p.numel() for p in model.parameters())


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


# Where a step's CPU time goes, by operator name (self time, first match wins).
PROFILE_CATEGORIES = (  # lower case
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")),
    ("attention", ("scaled_dot_product", "flash_attention")),
    ("optimizer", ("adam", "aten::_foreach", "clip_grad", "aten::norm", "linalg_vector_norm")),
    ("loss (log-softmax, NLL)", ("log_softmax", "nll_loss", "cross_entropy")),
    ("casts and copies", ("aten::to", "aten::_to_copy", "aten::copy_", "aten::clone")),
    ("embedding", ("embedding",)),
)


def print_profile(profiler) -> None:
    """The profiled steps' self CPU time by category, then the 15 largest operators."""
    events = [e for e in profiler.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    spent: dict[str, float] = {}
    for event in events:
        name = event.key.lower()
        matches = (label for label, keys in PROFILE_CATEGORIES if any(k in name for k in keys))
        category = next(matches, "other elementwise")
        spent[category] = spent.get(category, 0.0) + event.self_cpu_time_total
    print("| where (self CPU time of the profiled steps) | share |")
    print("|---|---|")
    for category, micros in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"| {category} | {micros / total:.0%} |")
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def trainer_loop(
    config,
    tokenized,
    model_dir,
    *,
    precision: str,
    steps: int,
    warmup: int,
    fused_adamw: bool,
    masters: str = "fp32",
    compiled: bool = False,
    profile: bool = False,
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
    config["training"]["master_weights"] = masters
    resources = train_resources(config, "bench")
    batch = resources["per_device_batch_size"]
    plan = plan_batch(batch, 1, batch)
    parallel = parallelism_of(Recipe.of(config), 1, cuda=False)

    class Timer(TrainerCallback):
        """Wall time from the end of the last warm-up step to the end of the last step: the
        Trainer's whole loop (data loading, logging, callbacks), not only its step bodies."""

        profiler = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                self.start, self.tokens_before = time.perf_counter(), state.num_input_tokens_seen
                if profile:
                    self.profiler = torch.profiler.profile(activities=[
                        torch.profiler.ProfilerActivity.CPU])  # fmt: skip
                    self.profiler.__enter__()
            self.seconds = time.perf_counter() - self.start if state.global_step > warmup else 0
            # the Trainer's own count of non-padding tokens, as the bare loop counts them: an
            # epoch's last batch holds fewer blocks (10 blocks in batches of 4)
            self.tokens = state.num_input_tokens_seen - self.tokens_before if self.seconds else 0
            if self.profiler is not None and state.global_step == steps:
                self.profiler.__exit__(None, None, None)

    with tempfile.TemporaryDirectory() as scratch:
        job = Job(
            config, "bench", "bench", "cpt", tokenized, model_dir, scratch, scratch, resources
        )
        args = training_arguments(job, plan, parallel)
        args.max_steps, args.save_strategy, args.report_to = steps, "no", []
        if not fused_adamw:
            args.optim = OptimizerNames.ADAMW_TORCH
        # torch.compile through the Trainer's own switch (Accelerate's dynamo plugin); the
        # backend is named because __post_init__, which would default it, has run already.
        args.torch_compile, args.torch_compile_backend = compiled, "inductor" if compiled else None
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=getattr(torch, Recipe.of(config).resolved(cuda=False)[0].master_dtype)
        )
        train_set = load_from_disk(tokenized)["train"]
        timer = Timer()
        trainer = make_trainer(job, model, train_set, plan, parallel, args=args, callbacks=[timer])
        trainer.train()
        if timer.profiler is not None:
            print(f"profile of the Trainer's {steps - warmup} timed steps, {precision}:")
            print_profile(timer.profiler)
        return timer.tokens / timer.seconds


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
        "--profile",
        action="store_true",
        help="instead of the comparison: profile the Trainer's timed steps (fused AdamW) in "
        "each of --precisions, and print where their CPU time goes",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also the bf16 Trainer under torch.compile (inductor), with fp32 and bf16 master "
        "weights (compiling takes minutes on a few cores; the warm-up steps absorb it)",
    )
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
    if args.profile:
        for precision in precisions:
            trainer_loop(config, args.tokenized, args.model_dir, precision=precision,
                         fused_adamw=True, profile=True, **common)  # fmt: skip
        return
    # (path, precision, fused AdamW, master weights, compiled); the fp32 loop run is the Trainer
    # as it was before this bench: fp32 with the per-parameter AdamW loop.
    runs = [
        run
        for run in [
            ("bare", "fp32", True, "fp32", False),
            ("trainer", "fp32", True, "fp32", False),
            ("bare", "bf16", True, "fp32", False),
            ("trainer", "bf16", True, "fp32", False),
            ("trainer", "bf16", True, "bf16", False),  # the authors' pure bf16
            ("trainer", "fp32", False, "fp32", False),
            *[("trainer", "bf16", True, masters, True) for masters in ("fp32", "bf16")],
        ]
        if run[1] in precisions and (args.compile or not run[4])
    ]
    rates: dict[tuple, float] = {}
    peaks: dict[str, tuple[float, str]] = {}
    bandwidth = 0.0
    seq = batches[0]["input_ids"].shape[1]
    shapes = [(n, n, n) for n in SQUARE_SIZES] + model_gemms(args.model_dir, batch * seq)
    # Interleaved rounds, best of each: the first run in a process pays one-off costs (thread
    # pools, allocator) and the machine is shared.
    for _ in range(args.rounds):
        for precision in precisions:
            peaks[precision] = max(peaks.get(precision, (0.0, "")), matmul_peak(precision, shapes))
        bandwidth = max(bandwidth, copy_bandwidth())
        for run in runs:
            path, precision, fused, masters, compiled = run
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
                    masters=masters,
                    compiled=compiled,
                    **common,
                )
            rates[run] = max(rates.get(run, 0.0), rate)
    flops = training_flops_per_token(args.model_dir, seq)
    params = parameter_count(args.model_dir)
    print(f"{args.steps - args.warmup} timed steps of {batch}x{seq} tokens; {args.tokenized}")
    print(f"training FLOPs per token: {flops / 1e9:.3f} G; {params / 1e6:.1f} M parameters")
    for precision, (peak, where) in peaks.items():
        print(f"matmul peak ({precision}, best of {len(shapes)} shapes x threads): "
              f"{peak / 1e12:.3f} TFLOP/s ({where})")  # fmt: skip
    print(f"copy bandwidth (best of 1 and all threads): {bandwidth / 1e9:.1f} GB/s")
    print("| path | precision | master weights | AdamW | compiled | tokens/s | TFLOP/s | "
          "of the matmul peak | bound at this batch |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    above = []
    for (path, precision, fused, masters, compiled), rate in rates.items():
        adamw = "fused" if fused else "per-parameter loop"
        peak = peaks[precision][0]
        share = rate * flops / peak
        bound = matmul_share_bound(
            flops, batch * seq, params, {"fp32": 4, "bf16": 2}[masters], peak, bandwidth
        )
        print(f"| {path} | {precision} | {masters} | {adamw} | {'yes' if compiled else 'no'} | "
              f"{rate:,.0f} | {rate * flops / 1e12:.3f} | {share:.0%} | {bound:.0%} |")  # fmt: skip
        if share > 1:
            above.append(f"{path} {precision} {masters} {adamw}")
    print(
        "bound: matmuls at the peak plus AdamW's update at the copy bandwidth "
        f"({OPTIMIZER_TENSOR_PASSES} passes over the master weights)"
    )
    for precision in precisions:
        ratio = (
            rates[("trainer", precision, True, "fp32", False)]
            / rates[("bare", precision, True, "fp32", False)]
        )
        print(f"trainer / bare loop ({precision}): {ratio:.2f}")
    new_default = "bf16" if "bf16" in precisions else "fp32"
    if len(precisions) == 2:
        bf16_vs_fp32 = (
            rates[("trainer", "bf16", True, "fp32", False)]
            / rates[("trainer", "fp32", True, "fp32", False)]
        )
        print(f"trainer bf16 / trainer fp32: {bf16_vs_fp32:.2f}")
    if "fp32" in precisions:
        before = rates[("trainer", "fp32", False, "fp32", False)]
        print(
            f"new default ({new_default}, fused) / previous default (fp32, loop): "
            f"{rates[('trainer', new_default, True, 'fp32', False)] / before:.2f}"
        )
    print("precision auto picks bf16 here: {} ({})".format(*native_bf16(cuda=False)))
    if above:
        sys.exit(f"above the measured matmul peak: {', '.join(above)}; the peak is not one "
                 "(a shape or thread count it misses), or the FLOP count is wrong")  # fmt: skip


if __name__ == "__main__":
    main()
