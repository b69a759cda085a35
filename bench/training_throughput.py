"""Benchmark: the training stage on packed blocks vs a plain HF Trainer on unpacked documents.

Both train the same model on the same corpus for the same number of optimizer steps, on CPU, in
fp32. Step sizes are chosen to hold about the same number of positions (default: 2 blocks of
256 tokens = 512, vs 4 documents of about 120 tokens padded to the longest of the batch, about
600), because on CPU the time per token depends strongly on how many positions a step holds:

- ``packed``: the project's Trainer (cft.training.make_trainer) on the ``cpt`` blocks of the
  tokenize stage (every position a document token);
- ``baseline``: ``transformers.Trainer`` with ``DataCollatorForLanguageModeling`` on the same
  documents, one document per sequence (truncated to max_seq_len), padded to the longest in
  the batch, the usual way to fine-tune without packing.

Reported: document tokens (non-pad positions) per second over the timed steps (the first
steps are warm-up and not timed), and their ratio.

    .venv/bin/python bench/training_throughput.py --domain biomed --steps 12 \\
        --packed-batch 2 --baseline-batch 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def timed_callback(warmup: int):
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        """Seconds and non-pad tokens of the steps after ``warmup``."""

        def __init__(self):
            self.seconds, self.tokens, self.start = 0.0, 0, None

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter() if state.global_step >= warmup else None

        def on_step_end(self, args, state, control, **kwargs):
            if self.start is not None:
                self.seconds += time.perf_counter() - self.start

    return Timer()


class TokenCounter:
    """Wraps a collator; counts the non-pad tokens of the batches after ``warmup`` steps."""

    def __init__(self, collate, warmup: int):
        self.collate, self.warmup, self.calls, self.tokens = collate, warmup, 0, 0
        self.positions = 0

    def __call__(self, rows):
        batch = self.collate(rows)
        if self.calls >= self.warmup:
            self.tokens += int(batch["attention_mask"].sum())
            self.positions += batch["attention_mask"].numel()
        self.calls += 1
        return batch


def bench_corpus(domain: str, mix: int, seed: int, out: Path) -> Path:
    """The domain's training documents; with ``mix`` > 1, each bench document joins 1 to
    ``mix`` consecutive ones, so lengths vary as in real corpora (demo documents are all
    about 120 tokens)."""
    import numpy as np
    import pandas as pd

    docs = pd.read_parquet(f"results/corpus/{domain}/documents.parquet")
    texts = list(docs[docs.split == "train"].text)
    rng, joined = np.random.default_rng(seed), []
    while texts:
        take = int(rng.integers(1, mix + 1))
        joined.append("\n\n".join(texts[:take]))
        texts = texts[take:]
    table = pd.DataFrame(
        {"doc_id": [f"b{i}" for i in range(len(joined))], "split": "train", "text": joined}
    )
    table.to_parquet(out)
    return out


def run_packed(config, corpus, model_dir, steps, warmup, batch, scratch: Path):
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM

    from cft.packing.tokenize import run as pack
    from cft.training.data import collate_blocks
    from cft.training.launch import parallelism_of, plan_batch, train_resources
    from cft.training.recipe import Job, Recipe
    from cft.training.trainer import make_trainer

    tokenized = str(scratch / "cpt")
    pack(
        config,
        "bench",
        "bench",
        "cpt",
        corpus_table=corpus,
        tokenizer_dir=Path(model_dir),
        out_dir=Path(tokenized),
    )
    job = Job(
        config,
        "bench",
        Path(model_dir).name,
        "cpt",
        tokenized,
        str(model_dir),
        "/tmp/cft-bench-out",
        "/tmp/cft-bench-ckpt",
        train_resources(config, "x"),
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    train_set = load_from_disk(tokenized)["train"]
    timer = timed_callback(warmup)
    parallel = parallelism_of(Recipe.of(config), 1, cuda=False)
    trainer = make_trainer(
        job, model, train_set, plan_batch(batch, 1, batch), parallel, callbacks=[timer]
    )
    counter = TokenCounter(collate_blocks, warmup)
    trainer.data_collator = counter
    trainer.args.max_steps, trainer.args.save_strategy, trainer.args.report_to = steps, "no", []
    trainer.train()
    return counter, timer.seconds


def run_baseline(config, corpus, model_dir, steps, warmup, batch, max_seq_len):
    import pandas as pd
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    docs = pd.read_parquet(corpus)
    encoded = tokenizer(list(docs.text), truncation=True, max_length=max_seq_len)
    train_set = Dataset.from_dict({"input_ids": encoded.input_ids})
    timer = timed_callback(warmup)
    counter = TokenCounter(DataCollatorForLanguageModeling(tokenizer, mlm=False), warmup)
    args = TrainingArguments(
        output_dir="/tmp/cft-bench-baseline",
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=config["training"]["learning_rate"],
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        seed=config["seed"],
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = Trainer(
        model=model, args=args, train_dataset=train_set, data_collator=counter, callbacks=[timer]
    )
    trainer.train()
    return counter, timer.seconds


def main() -> None:
    from cft.core.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--domain", default="biomed")
    parser.add_argument("--model-dir", default="results/base_models/smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--packed-batch", type=int, default=2, help="blocks per step")
    parser.add_argument("--baseline-batch", type=int, default=4, help="documents per step")
    parser.add_argument("--mix", type=int, default=1, help="join 1..MIX documents into one")
    parser.add_argument(
        "--baseline-max-len", type=int, default=2048, help="truncation of the baseline"
    )
    args = parser.parse_args()
    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = bench_corpus(args.domain, args.mix, config["seed"], Path(tmp) / "docs.parquet")
        packed = run_packed(
            config, corpus, args.model_dir, args.steps, args.warmup, args.packed_batch, Path(tmp)
        )
        base = run_baseline(
            config,
            corpus,
            args.model_dir,
            args.steps,
            args.warmup,
            args.baseline_batch,
            args.baseline_max_len,
        )
    print(f"corpus: {args.domain} training documents, joined 1..{args.mix} at a time")
    print(
        "| run | sequences per step | positions (timed) | document tokens (timed) | seconds "
        "| document tokens/s |"
    )
    print("|---|---|---|---|---|---|")
    rows = [
        ("packed (cft.training, cpt blocks)", args.packed_batch, packed),
        ("baseline (HF Trainer, one document per sequence)", args.baseline_batch, base),
    ]
    rates = []
    for name, batch, (counter, seconds) in rows:
        rates.append(counter.tokens / seconds)
        print(
            f"| {name} | {batch} | {counter.positions:,} | {counter.tokens:,} | "
            f"{seconds:.1f} | {rates[-1]:,.0f} |"
        )
    print(f"\nratio packed / baseline (document tokens/s): {rates[0] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
