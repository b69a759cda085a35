"""Benchmark: memory and time of one training step's loss, full logits against the chunked loss
(``training.chunked_loss``), at the vocabularies of Llama-2 (32,000), Llama-3 (128,256) and
Gemma-3 (262,144).

Each case runs in a fresh process: a 1-layer random Llama (width 64, so that the head's logits
dominate as they do at the paper's scale) takes one forward and backward pass over
``--batch`` x ``--seq`` tokens, every token a loss token, in fp32 (or bf16 autocast with
``--bf16``). Reported: the process's peak RSS above its RSS just before the step (what the
step added at its peak), that per (token x vocabulary entry), the step's seconds, and the loss
of the two paths (equal up to float rounding).

    .venv/bin/python bench/chunked_loss.py --batch 2 --seq 1024
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

VOCABULARIES = {"llama-2 (32k)": 32_000, "llama-3 (128k)": 128_256, "gemma-3 (262k)": 262_144}


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def one_case(vocab: int, chunked: bool, batch: int, seq: int, bf16: bool) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from cft.training.loss import chunk_rows, use_chunked_loss

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    rows = chunk_rows(vocab)
    if chunked:
        use_chunked_loss(model, rows)
    ids = torch.randint(0, vocab, (batch, seq))
    before = rss_mb()
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    added = max(peak - before, 0.0)
    tokens = batch * (seq - 1)  # loss tokens
    return {
        "vocab": vocab,
        "chunked": chunked,
        "chunk_rows": rows if chunked else None,
        "loss": loss.item(),
        "step_seconds": seconds,
        "peak_added_mib": added,
        "bytes_per_token_entry": added * 2**20 / (tokens * vocab),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # vocab,chunked: run one, print JSON
    args = parser.parse_args()
    if args.case:
        vocab, chunked = args.case.split(",")
        print(json.dumps(one_case(int(vocab), chunked == "1", args.batch, args.seq, args.bf16)))
        return
    print(f"{args.batch} x {args.seq} tokens, {'bf16 autocast' if args.bf16 else 'fp32'}")
    print("| vocabulary | path | peak added | bytes / (token x entry) | step s | loss |")
    print("|---|---|---|---|---|---|")
    for name, vocab in VOCABULARIES.items():
        losses = []
        for chunked in (False, True):
            command = [sys.executable, __file__, "--case", f"{vocab},{int(chunked)}",
                       "--batch", str(args.batch), "--seq", str(args.seq)]  # fmt: skip
            if args.bf16:
                command.append("--bf16")
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            case = json.loads(out.strip().splitlines()[-1])
            losses.append(case["loss"])
            path = f"chunks of {case['chunk_rows']}" if chunked else "full logits"
            print(
                f"| {name} | {path} | {case['peak_added_mib'] / 1024:.2f} GiB | "
                f"{case['bytes_per_token_entry']:.1f} | {case['step_seconds']:.2f} | "
                f"{case['loss']:.6f} |",
                flush=True,
            )
        print(f"|  | loss difference | {abs(losses[0] - losses[1]):.1e} |  |  |  |", flush=True)


if __name__ == "__main__":
    main()
