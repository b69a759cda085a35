"""Benchmark: tokenization + packing stage vs the raw fast tokenizer on the same text.

For each corpus size: write a demo-style corpus (a ~1M-token base corpus of the biomedical demo
generator, repeated under new document ids), then, each in a fresh process so that its peak
memory is its own, time (a) the raw fast tokenizer over all texts (batches of 256, as the stage
does) and (b) the whole packing stage (``cft`` method, plain prompts, ``num_proc`` 1 for a
like-for-like ratio), and report tokens/s of both, their ratio, the non-pad fraction and each
process's peak RSS.

    .venv/bin/python bench/packing_throughput.py --sizes 1000000 4000000 16000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

BASE_TOKENS = 1_000_000


def write_corpus(path: Path, target_tokens: int) -> None:
    """A corpus of about ``target_tokens`` SmolLM2 tokens, written row group by row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cft.data.demo_data import generate

    docs, _ = generate("biomed", BASE_TOKENS // 370, 3, seed=0)  # ~370 tokens per entity
    texts = [d["text"] for d in docs]
    copies = max(1, round(target_tokens / BASE_TOKENS))
    with pq.ParquetWriter(
        path, pa.schema([("doc_id", pa.string()), ("split", pa.string()), ("text", pa.string())])
    ) as writer:
        for copy in range(copies):
            ids = [f"{d['doc_id']}-{copy}" for d in docs]
            writer.write_table(
                pa.table({"doc_id": ids, "split": ["train"] * len(ids), "text": texts})
            )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class AnonymousMemoryPeak:
    """Peak anonymous (heap) RSS, sampled every 10 ms from /proc/self/status. Peak RSS alone
    also counts the pages of memory-mapped Arrow files that were read, which the kernel can drop
    at any time; anonymous memory is what a streamed stage must keep flat."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def current_kb() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
        return 0

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_kb = max(self.peak_kb, self.current_kb())

    def __enter__(self) -> AnonymousMemoryPeak:
        self.peak_kb = self.current_kb()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, self.current_kb())


def raw_tokenizer(corpus: Path, model_dir: Path) -> dict:
    """Seconds of two raw tokenizer paths: the usual ``tokenizer(texts)`` call, and the Rust
    backend's ``encode_batch_fast`` (no offsets), the path the stage itself uses."""
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    backend = tokenizer.backend_tokenizer
    paths = {
        "call": lambda texts: tokenizer(texts, add_special_tokens=False).input_ids,
        "fast": lambda texts: [
            e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)
        ],
    }
    result = {}
    for name, encode in paths.items():
        encode(["warm up"])
        seconds, tokens = 0.0, 0
        for batch in pq.ParquetFile(corpus).iter_batches(batch_size=256, columns=["text"]):
            texts = batch.column("text").to_pylist()
            start = time.perf_counter()
            ids = encode(texts)
            seconds += time.perf_counter() - start
            tokens += sum(map(len, ids))
        result[name] = {"tokens": tokens, "seconds": seconds}
    return {**result, "tokens": result["call"]["tokens"], "peak_rss_mb": peak_rss_mb()}


def stage(corpus: Path, model_dir: Path, max_seq_len: int) -> dict:
    # Module imports are per-process start-up, not the stage's work: warm them before timing
    # (transformers' model modules through a tokenizer load; scipy.io, which datasets' streaming
    # patches import on first use).
    import scipy.io  # noqa: F401
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(model_dir)

    from cft.core.config import load_config
    from cft.packing.tokenize import run

    config = load_config(REPO / "config" / "config.yaml")
    config["training"]["max_seq_len"] = max_seq_len
    config["packing"]["num_proc"] = 1
    with tempfile.TemporaryDirectory() as tmp, AnonymousMemoryPeak() as memory:
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
        seconds = time.perf_counter() - start
    train = record["splits"]["train"]
    return {
        "tokens": train["document_tokens"] - train["documents"],
        "seconds": seconds,
        "blocks": train["blocks"],
        "non_pad_fraction": train["non_pad_fraction"],
        "peak_rss_mb": peak_rss_mb(),
        "peak_anon_mb": memory.peak_kb / 1024,
    }


def child(kind: str, corpus: Path, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--corpus",
        str(corpus),
        "--model-dir",
        args.model_dir,
        "--max-seq-len",
        str(args.max_seq_len),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--max-seq-len", type=int, default=4096)
    default_model = REPO / "results" / "base_models" / "smollm2-135m-instruct"
    parser.add_argument("--model-dir", default=str(default_model))
    parser.add_argument("--child", choices=["raw", "stage"], help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "raw":
        print(json.dumps(raw_tokenizer(Path(args.corpus), Path(args.model_dir))))
        return
    if args.child == "stage":
        print(json.dumps(stage(Path(args.corpus), Path(args.model_dir), args.max_seq_len)))
        return
    print(
        "| document tokens | `tokenizer()` tok/s | `encode_batch_fast` tok/s | stage tok/s "
        "| ratio to `tokenizer()` | ratio to `encode_batch_fast` | stage s | non-pad "
        "| stage peak RSS MB | stage peak anonymous MB |"
    )
    print("|" + "---|" * 10)
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "documents.parquet"
            write_corpus(corpus, size)
            raw = child("raw", corpus, args)
            packed = child("stage", corpus, args)
        assert raw["tokens"] == packed["tokens"], (raw["tokens"], packed["tokens"])
        call_tps = raw["tokens"] / raw["call"]["seconds"]
        fast_tps = raw["tokens"] / raw["fast"]["seconds"]
        stage_tps = packed["tokens"] / packed["seconds"]
        print(
            f"| {raw['tokens']:,} | {call_tps:,.0f} | {fast_tps:,.0f} | {stage_tps:,.0f} | "
            f"{stage_tps / call_tps:.2f} | {stage_tps / fast_tps:.2f} | {packed['seconds']:.1f} | "
            f"{packed['non_pad_fraction']:.5f} | {packed['peak_rss_mb']:,.0f} | "
            f"{packed['peak_anon_mb']:,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
