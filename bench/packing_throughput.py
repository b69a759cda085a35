"""Benchmark: tokenization + packing stage vs the raw fast tokenizer on the same text.

For each corpus size, in a fresh process (so peak memory is per size): build a demo-style
corpus, time the raw fast tokenizer over all its texts (one process, batches of 256), then time
the whole packing stage (cft method, plain prompts, num_proc 1 for a like-for-like ratio), and
report tokens/s of both, their ratio, the non-pad fraction and the process's peak RSS.

    .venv/bin/python bench/packing_throughput.py --sizes 1000000 2000000 --max-seq-len 4096
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def one_size(target_tokens: int, max_seq_len: int, model_dir: Path) -> dict:
    import pandas as pd
    from transformers import AutoTokenizer

    from cft.config import load_config
    from cft.demo_data import generate
    from cft.packing import run

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    n_entities = max(4, target_tokens // 370)  # ~3 documents of ~123 tokens per entity
    docs, _ = generate("biomed", n_entities, 3, seed=0)
    texts = [d["text"] for d in docs]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "documents.parquet"
        pd.DataFrame(
            {"doc_id": [d["doc_id"] for d in docs], "split": "train", "text": texts}
        ).to_parquet(corpus)

        start = time.perf_counter()
        n_tokens = 0
        for i in range(0, len(texts), 256):
            batch = tokenizer(texts[i : i + 256], add_special_tokens=False).input_ids
            n_tokens += sum(map(len, batch))
        raw_seconds = time.perf_counter() - start

        config = load_config(REPO / "config" / "config.yaml")
        config["training"]["max_seq_len"] = max_seq_len
        config["packing"]["num_proc"] = 1
        start = time.perf_counter()
        record = run(
            config,
            "biomed",
            "bench",
            "cft",
            corpus_table=corpus,
            tokenizer_dir=model_dir,
            out_dir=Path(tmp) / "packed",
        )
        stage_seconds = time.perf_counter() - start
    train = record["splits"]["train"]
    return {
        "documents": len(texts),
        "document_tokens": n_tokens,
        "raw_tokenizer_tokens_per_s": n_tokens / raw_seconds,
        "stage_tokens_per_s": n_tokens / stage_seconds,
        "ratio": raw_seconds / stage_seconds,
        "stage_seconds": stage_seconds,
        "blocks": train["blocks"],
        "non_pad_fraction": train["non_pad_fraction"],
        "loss_bearing_fraction": train["loss_bearing_fraction"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 2_000_000])
    parser.add_argument("--max-seq-len", type=int, default=4096)
    default_model = REPO / "results" / "base_models" / "smollm2-135m-instruct"
    parser.add_argument("--model-dir", default=str(default_model))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_size(args.child, args.max_seq_len, Path(args.model_dir))))
        return
    rows = []
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(size), "--max-seq-len"]
        cmd += [str(args.max_seq_len), "--model-dir", args.model_dir]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    columns = ["document tokens", "raw tokenizer tok/s", "stage tok/s", "ratio", "stage s"]
    columns += ["non-pad", "peak RSS MB"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * 7)
    for r in rows:
        print(
            f"| {r['document_tokens']:,} | {r['raw_tokenizer_tokens_per_s']:,.0f} | "
            f"{r['stage_tokens_per_s']:,.0f} | {r['ratio']:.2f} | {r['stage_seconds']:.1f} | "
            f"{r['non_pad_fraction']:.5f} | {r['peak_rss_mb']:,.0f} |"
        )


if __name__ == "__main__":
    main()
