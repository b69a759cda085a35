"""Scale rehearsal: the paper's data volume, rehearsed on CPU with the pipeline's own stages.

Generates corpora laid out as the hub repos lay them out, at a fraction of the paper's size:

- biomed, like ywchoi/OpenMedText: one ``.txt`` file per document in category folders, article-
  sized documents (``fraction`` x 121,489) and textbook-sized ones (``fraction`` x 29, at least
  one, so the longest documents are always in the run);
- finance, like ashraq/financial-news-articles: parquet shards with ``title``, ``text``, ``url``
  (``fraction`` x 306,242 rows).

The cards state document counts, not length distributions; the lengths drawn here are stated
in :data:`LENGTHS` (log-normal, medians chosen to match the sizes the cards and docs/cluster.md
give: ~30k characters per article, ~2.5M per textbook, ~3k per news article). The text is
Zipf-distributed words (the tokenizer's whole-word tokens) in sentences and paragraphs, so the
real tokenizer (SmolLM2's byte-level BPE, from the packaged GGUF) gives about English's
characters per token.

Then, each as its own process through its ``python -m cft.<stage>`` entry point, on the
config/paper.yaml recipe (4,096-token sequences, pure bf16, FULL_SHARD) with a tiny random
Llama in place of Llama-2 (same tokenizer as above):

    corpus (both domains) -> packing (both domains, ``document`` and ``packed`` modes)
    -> training (``max_steps`` optimizer steps: 1 process on the packed blocks, 2-process
       FSDP2 over gloo on the document chunks)
    -> autogen (transformers backend, on a subset that includes the longest document)
    -> evaluation (lm-eval, hf backend, the FinBen-format fiqasa set written offline)

and records, for each stage, wall and CPU seconds (of the process and its children, from
``wait4``), peak memory of the process tree (:class:`TreeMemory`), documents/s and tokens/s.
With two or more fractions, wall time and peak memory are fitted as ``a + b * size`` per
stage and extrapolated to the paper's corpora on the node given by ``--node-cores`` and
``--node-mem-gb`` (CPU stages at the rate measured here: the corpus stage and the packing loop
are single-process, so more cores do not shorten them).
A length sweep measures each per-document step at 10k to 1M characters (time per character
must not grow with the length) and the fingerprints' hashing rates.

    .venv/bin/python bench/scale_rehearsal.py --fractions 0.01 0.04 --out bench-results/scale
    .venv/bin/python bench/scale_rehearsal.py --fractions 0.0003 --max-steps 1 --threads 1 \
        --out /tmp/scale   # the CI size (tests/{unit,integration}/test_scale.py)

Writes ``<out>/rehearsal.json`` and ``<out>/rehearsal.md``; each size's files stay under
``<out>/f<fraction>/`` (the stage logs under ``logs/``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

PAPER_CORPORA = {"articles": 121_489, "textbooks": 29, "news": 306_242}
# (median characters, log-normal sigma, minimum, maximum) per document kind
LENGTHS = {
    "article": (30_000, 0.6, 2_000, 400_000),
    "textbook": (2_500_000, 0.5, 500_000, 8_000_000),
    "news": (3_000, 0.7, 300, 60_000),
}
ARTICLE_CATEGORIES = ("medicine", "pharmaceutics", "nutrients", "cancers", "jcm", "ijms")
MODEL = "tiny-llama"
DOMAIN_TASK = "demo_finben_fiqasa"
SEQ_CHECK_LENGTHS = (10_000, 100_000, 1_000_000)


# ---- corpora in the hub layouts ----------------------------------------------------------------


class TextMaker:
    """Zipf-distributed words in sentences and paragraphs, from a seeded generator. The words
    are the whole-word tokens of the tokenizer's vocabulary in merge order (BPE merges the
    most frequent pairs first, so the order follows frequency), so a character costs about as
    many tokens as in English text."""

    def __init__(self, words: list[str], seed: int):
        self.rng = np.random.default_rng(seed)
        self.words = np.array(words, dtype=object)
        weights = 1.0 / np.arange(1, len(words) + 1)
        self.p = weights / weights.sum()
        self.chars_per_word = float(np.dot(self.p, [len(w) + 1 for w in words]))

    def text(self, chars: int) -> str:
        n = max(4, round(chars / self.chars_per_word))
        words = self.words[self.rng.choice(len(self.words), size=n, p=self.p)].tolist()
        ends = np.cumsum(self.rng.integers(8, 30, size=n // 8 + 1))
        for i, end in enumerate(ends[ends < n]):
            words[end] = words[end] + (".\n\n" if i % 6 == 5 else ".")
        return " ".join(words).capitalize() + "."

    def length(self, kind: str) -> int:
        median, sigma, low, high = LENGTHS[kind]
        return int(np.clip(self.rng.lognormal(math.log(median), sigma), low, high))


def vocabulary_words(tokenizer, limit: int = 20_000) -> list[str]:
    """Lower-case alphabetic whole-word tokens (byte-level BPE marks a leading space as 'Ġ'),
    in id order."""
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    words = [t[1:] for t, _ in by_id if t.startswith("Ġ") and t[1:].isalpha() and t[1:].islower()]
    return words[:limit]


def scaled(count: int, fraction: float, minimum: int = 1) -> int:
    return max(minimum, round(count * fraction))


def write_openmedtext(root: Path, fraction: float, words: list[str], seed: int) -> dict:
    maker = TextMaker(words, seed)
    counts = {"articles": scaled(PAPER_CORPORA["articles"], fraction, 8)}
    counts["textbooks"] = scaled(PAPER_CORPORA["textbooks"], fraction)
    chars = 0
    for i in range(counts["articles"]):
        path = root / "mdpi" / ARTICLE_CATEGORIES[i % len(ARTICLE_CATEGORIES)] / f"{i:07d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = maker.text(maker.length("article"))
        path.write_text(text, encoding="utf-8")
        chars += len(text)
    for i in range(counts["textbooks"]):
        path = root / "textbooks" / f"textbook_{i:02d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = maker.text(maker.length("textbook"))
        path.write_text(text, encoding="utf-8")
        chars += len(text)
    (root / "README.md").write_text("# OpenMedText (scale rehearsal stand-in)\n")
    return {**counts, "documents": counts["articles"] + counts["textbooks"], "chars": chars}


def write_financial_news(
    root: Path, fraction: float, words: list[str], seed: int, shards: int = 2
) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    maker = TextMaker(words, seed + 1)
    rows = scaled(PAPER_CORPORA["news"], fraction, 8)
    (root / "data").mkdir(parents=True, exist_ok=True)
    chars = 0
    per_shard = math.ceil(rows / shards)
    for shard in range(shards):
        ids = range(shard * per_shard, min(rows, (shard + 1) * per_shard))
        titles = [maker.text(60).split(".")[0] for _ in ids]
        texts = [maker.text(maker.length("news")) for _ in ids]
        chars += sum(map(len, texts)) + sum(map(len, titles))
        pq.write_table(
            pa.table(
                {
                    "title": titles,
                    "text": texts,
                    "url": [f"https://news.example/{i}" for i in ids],
                }
            ),
            root / "data" / f"train-{shard:05d}-of-{shards:05d}.parquet",
        )
    (root / "README.md").write_text("# financial-news-articles (scale rehearsal stand-in)\n")
    return {"documents": rows, "chars": chars}


# ---- the model: a tiny random Llama with the packaged tokenizer ------------------------------


def packaged_tokenizer():
    from transformers import AutoTokenizer

    from cft.core.config import load_config
    from cft.data.base_model import packaged_gguf_path

    packaged = load_config(REPO / "config" / "config.yaml")["models"]["smollm2-135m-instruct"]
    gguf = packaged_gguf_path(packaged["package"], packaged["gguf_file"])
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def tiny_model(folder: Path) -> None:
    """Saved as the base_model stage saves (bf16, with the fingerprint record training checks)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from cft.core.fingerprints import record_fingerprint

    tokenizer = packaged_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    record_fingerprint(folder)


# ---- the config: config/paper.yaml with local stand-ins --------------------------------------


def rehearsal_config(root: Path, *, mode: str, processes: int, max_steps: int) -> dict:
    from cft.core.config import read_config_file

    paper = read_config_file(REPO / "config" / "paper.yaml")
    config = copy.deepcopy(paper)
    config["grid"] = {**paper["grid"], "models": [MODEL]}
    config["models"] = {MODEL: {"source": "local", "path": str(root / MODEL), "dtype": "bfloat16"}}
    config["baselines"] = {}
    for domain in ("biomed", "finance"):
        config["domains"][domain]["source"]["local_path"] = str(root / "raw" / domain)
    config["packing"] = {**paper["packing"], "mode": mode}
    config["autogen"] = {
        **paper["autogen"],
        "model": MODEL,
        "backend": "transformers",
        "gpus": 0,
        "gpu_model": "",
        "max_new_tokens": 16,
        "shard_size": 8,
    }
    config["training"] = {
        **paper["training"],  # 4,096 tokens, pure bf16, FULL_SHARD, the authors' recipe
        "max_steps": max_steps,
        "global_batch_size": processes,  # one micro-batch per rank and step
        "eval_at_end": False,
        # The rehearsal measures what grows with the data (loading, checks, saving); on CPU
        # a 32-wide model runs bf16 about 4x slower than fp32 (small-K matmuls), so fp32.
        "precision": "fp32",
        "master_weights": "fp32",
        "resources": {
            "default": {
                "nodes": 1,
                "gpus_per_node": 0,
                "cpu_processes_per_node": processes,
                "cpus_per_task": 2,
                "mem_mb": 8000,
                "runtime": 60,
                "per_device_batch_size": 1,
            }
        },
    }
    config["evaluation"] = {
        **paper["evaluation"],
        "suites": {"finance": [DOMAIN_TASK]},
        "batch_size": 8,
        "gpus": 0,
    }
    return config


# ---- running a stage as its own process ----------------------------------------------------------


class TreeMemory:
    """Peak memory of a process and its descendants (torchrun's ranks, datasets' workers),
    sampled from /proc every ``interval`` seconds as proportional set sizes (Pss: a page
    shared by forked workers counts once, as the node's memory controller counts it): the
    largest sum of their Pss, the largest sum of their Pss_Anon (heap: what the job must be
    given; Pss also counts pages of memory-mapped Arrow files, which the kernel reclaims under
    pressure), and the largest VmHWM of any one of them. (wait4's ru_maxrss would also count
    the parent's memory at the fork.)"""

    def __init__(self, pid: int, interval: float = 0.2):
        import threading

        self.pid, self.interval = pid, interval
        self.peak_sum_kb = self.peak_anon_kb = self.peak_process_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _parent(pid: int) -> int | None:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("PPid:"):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return None

    @staticmethod
    def _memory(pid: int) -> dict[str, int]:
        fields = {}
        try:
            for name in ("smaps_rollup", "status"):
                for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in ("Pss", "Pss_Anon", "VmHWM"):
                        fields[key] = int(value.split()[0])
        except (OSError, ValueError):
            pass
        return fields

    def _tree(self) -> list[int]:
        parents = {int(p.name): self._parent(int(p.name)) for p in Path("/proc").glob("[0-9]*")}
        members, frontier = [], [self.pid]
        while frontier:
            pid = frontier.pop()
            members.append(pid)
            frontier += [child for child, parent in parents.items() if parent == pid]
        return members

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            tree = [self._memory(pid) for pid in self._tree()]
            self.peak_sum_kb = max(self.peak_sum_kb, sum(m.get("Pss", 0) for m in tree))
            self.peak_anon_kb = max(self.peak_anon_kb, sum(m.get("Pss_Anon", 0) for m in tree))
            self.peak_process_kb = max([self.peak_process_kb] + [m.get("VmHWM", 0) for m in tree])

    def stop(self) -> tuple[float, float, float]:
        self._stop.set()
        self._thread.join()
        return self.peak_sum_kb / 1024, self.peak_anon_kb / 1024, self.peak_process_kb / 1024


def run_stage(name: str, args: list[str], cwd: Path, logs: Path) -> dict:
    """Run ``python -m cft.<...>`` as its own process: wall and CPU seconds (of the process
    and its children, from wait4) and peak memory (:class:`TreeMemory`)."""
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    print(f"  {name} ...", end="", flush=True)
    start = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, *args], cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        memory = TreeMemory(process.pid)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        peak_mb, peak_anon_mb, peak_process_mb = memory.stop()
    wall = time.perf_counter() - start
    print(f" {wall:.1f} s, peak {peak_mb:,.0f} MB ({peak_anon_mb:,.0f} MB anonymous)")
    if process.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"stage {name} failed (exit {process.returncode}); {log_path}:\n{tail}")
    return {
        "stage": name,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_pss_mb": peak_mb,
        "peak_anon_mb": peak_anon_mb,
        "peak_process_rss_mb": peak_process_mb,
    }


def rehearse(root: Path, fraction: float, max_steps: int, threads: int, seed: int) -> dict:
    from cft.core.io import write_json

    root.mkdir(parents=True, exist_ok=True)
    logs = root / "logs"
    print(f"fraction {fraction}: {root}")
    start = time.perf_counter()
    words = vocabulary_words(packaged_tokenizer())
    raw = {
        "biomed": write_openmedtext(root / "raw" / "biomed", fraction, words, seed),
        "finance": write_financial_news(root / "raw" / "finance", fraction, words, seed),
    }
    generate_s = time.perf_counter() - start
    tiny_model(root / MODEL)
    configs = {}
    for mode in ("document", "packed"):
        for processes in (1, 2):
            config = rehearsal_config(root, mode=mode, processes=processes, max_steps=max_steps)
            path = root / f"config_{mode}_{processes}.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            configs[mode, processes] = str(path)
    paper_config = configs["document", 1]
    stages = []

    for domain in ("biomed", "finance"):
        out = root / "corpus" / domain
        m = run_stage(
            f"corpus_{domain}",
            ["-m", "cft.data.corpus", "--config", paper_config, "--domain", domain,
             "--raw", str(root / "raw" / domain), "--out-dir", str(out)],
            root, logs,
        )  # fmt: skip
        stats = json.loads((out / "stats.json").read_text())
        m |= {"domain": domain, "documents": stats["documents_in"], "chars": stats["chars_in"]}
        stages.append(m)

    tokens = {}
    for mode in ("document", "packed"):
        for domain in ("biomed", "finance"):
            out = root / "tokenized" / mode / domain
            m = run_stage(
                f"packing_{mode}_{domain}",
                ["-m", "cft.packing.tokenize", "--config", configs[mode, 1], "--domain", domain,
                 "--model", MODEL, "--method", "cft", "--tokenizer", str(root / MODEL),
                 "--corpus", str(root / "corpus" / domain / "documents.parquet"),
                 "--out-dir", str(out), "--threads", str(threads)],
                root, logs,
            )  # fmt: skip
            stats = json.loads((out / "stats.json").read_text())
            splits = stats["splits"].values()
            m |= {
                "domain": domain,
                "mode": mode,
                "documents": sum(s["documents"] for s in splits),
                "tokens": sum(s["document_tokens"] for s in splits),
                "blocks": {k: s["blocks"] for k, s in stats["splits"].items()},
                "fingerprint": stats["fingerprint"],
            }
            tokens[domain] = m["tokens"]
            stages.append(m)

    # one process on the packed blocks, 2-process FSDP2 on the paper's document chunks
    for processes, mode in ((1, "packed"), (2, "document")):
        out = root / "models" / f"p{processes}"
        m = run_stage(
            f"training_{processes}p",
            ["-m", "cft.training", "--config", configs[mode, processes],
             "--domain", "biomed", "--model", MODEL, "--method", "cft",
             "--tokenized", str(root / "tokenized" / mode / "biomed"),
             "--base-model", str(root / MODEL), "--out-dir", str(out)],
            root, logs,
        )  # fmt: skip
        metrics = json.loads((out / "train_metrics.json").read_text())
        m |= {
            "domain": "biomed",
            "mode": mode,
            "processes": processes,
            "parallelism": metrics["parallelism"],
            "optimizer_steps": metrics["optimizer_steps"],
            "data_tokens": next(  # the data the job loads and checks
                x["tokens"] for x in stages if x["stage"] == f"packing_{mode}_biomed"
            ),
            "train_tokens_per_s": metrics["tokens_per_s"],
        }
        stages.append(m)

    subset = root / "autogen_subset.parquet"
    m = autogen_subset(root / "corpus" / "biomed" / "documents.parquet", subset)
    m |= run_stage(
        "autogen_biomed_subset",
        ["-m", "cft.packing.autogen", "--config", paper_config, "--domain", "biomed",
         "--corpus", str(subset), "--model-dir", str(root / MODEL),
         "--out", str(root / "prompts" / "biomed" / "autogen.parquet")],
        root, logs,
    )  # fmt: skip
    stages.append(m)

    from cft.data import finben_demo

    counts = finben_demo.write_sets(
        finben_demo.all_sets_under(root / "results" / "demo_data" / "finben")
    )
    m = run_stage(
        "evaluation",
        ["-m", "cft.evaluation.evaluate", "--config", paper_config, "--domain", "finance",
         "--model", MODEL, "--method", "cft", "--task", DOMAIN_TASK,
         "--model-dir", str(root / "models" / "p2"), "--out", str(root / "eval" / "eval.json")],
        root, logs,
    )  # fmt: skip
    m |= {"documents": counts["flare-fiqasa"]["test"], "unit": "questions"}
    stages.append(m)

    for m in stages:
        m["documents_per_s"] = m["documents"] / m["wall_s"] if m.get("documents") else None
        m["tokens_per_s"] = m["tokens"] / m["wall_s"] if m.get("tokens") else None
    record = {
        "fraction": fraction,
        "corpora": raw,
        "generate_s": generate_s,
        "tokens": tokens,
        "stages": stages,
    }
    write_json(root / "rehearsal_size.json", record)
    return record


def autogen_subset(corpus: Path, out: Path, documents: int = 16) -> dict:
    """The first documents of the corpus and its longest one (a textbook)."""
    import pandas as pd

    table = pd.read_parquet(corpus)
    longest = table.n_chars.idxmax()
    subset = pd.concat([table.head(documents - 1), table.loc[[longest]]]).drop_duplicates("doc_id")
    subset.to_parquet(out, index=False)
    return {"documents": len(subset), "chars": int(subset.n_chars.sum())}


# ---- per-document costs against the document's length ----------------------------------------


def length_sweep(seed: int) -> dict:
    """Seconds per million characters of each per-document step, at 10k to 1M characters, and
    the hashing rates behind the fingerprint checks."""
    from datasets import Dataset, DatasetDict

    from cft.core.fingerprints import dataset_fingerprint
    from cft.data.corpus import clean_text
    from cft.packing.autogen import shares_run
    from cft.packing.packer import Conditioning, PackStats, chunk_documents

    tokenizer = packaged_tokenizer()
    backend = tokenizer.backend_tokenizer
    maker = TextMaker(vocabulary_words(tokenizer), seed + 2)
    reply = maker.text(400)  # a generated prompt's length; it shares nothing with the document
    rows = {}
    for length in SEQ_CHECK_LENGTHS:
        text = maker.text(length)
        timings = {}

        def timed(name, fn, text=text, timings=timings):
            start = time.perf_counter()
            result = fn()
            timings[name] = (time.perf_counter() - start) / len(text) * 1e6  # s per M chars
            return result

        cleaned = timed("corpus clean_text", lambda text=text: clean_text(text))
        ids = timed(
            "tokenize", lambda c=cleaned: backend.encode_batch_fast([c], add_special_tokens=False)
        )[0].ids
        timed(
            "packing chunk_documents",
            lambda ids=ids: list(
                chunk_documents(
                    iter([("d", np.asarray(ids, dtype=np.int32))]),
                    max_seq_len=4096,
                    bos_id=None,
                    eos_id=0,
                    condition=lambda i, d: Conditioning(prefix=(1, 2, 3), prompt_index=0),
                    stats=PackStats(),
                    wrapping="authors",
                )
            ),
        )
        timed("autogen copy check", lambda c=cleaned: shares_run(reply, c))
        rows[length] = timings
    growth = {
        step: rows[SEQ_CHECK_LENGTHS[-1]][step] / rows[SEQ_CHECK_LENGTHS[0]][step]
        for step in rows[SEQ_CHECK_LENGTHS[0]]
    }
    doc_30k = maker.text(30_000)
    start = time.perf_counter()
    for _ in range(20):
        shares_run(reply, doc_30k)
    copy_check_ms = (time.perf_counter() - start) / 20 * 1e3

    import pyarrow as pa

    n, seq = 2000, 4096  # 2,000 sequences of 4,096 int32 tokens
    values = np.random.default_rng(0).integers(0, 49152, n * seq).astype(np.int32)
    offsets = pa.array(np.arange(0, n * seq + 1, seq, dtype=np.int32))
    column = pa.ListArray.from_arrays(offsets, values)
    data = DatasetDict({"train": Dataset(pa.table({"input_ids": column}))})
    size = values.nbytes
    start = time.perf_counter()
    dataset_fingerprint(data)
    dataset_gb_s = size / (time.perf_counter() - start) / 1e9
    import hashlib

    blob = os.urandom(256 * 2**20)
    start = time.perf_counter()
    hashlib.sha256(blob).hexdigest()
    sha_gb_s = len(blob) / (time.perf_counter() - start) / 1e9
    return {
        "seconds_per_million_chars": {str(k): v for k, v in rows.items()},
        "growth_1m_over_10k": growth,
        "copy_check_ms_per_30k_document": copy_check_ms,
        "dataset_fingerprint_gb_per_s": dataset_gb_s,
        "file_sha256_gb_per_s": sha_gb_s,
    }


# ---- extrapolation -----------------------------------------------------------------------------


def stage_key(m: dict) -> str:
    return m["stage"]


def extrapolate(sizes: list[dict], node_cores: int, node_mem_gb: float) -> list[dict] | None:
    """Per stage, wall seconds and peak memory fitted as a + b * fraction over the sizes, at
    fraction 1 (the paper's corpora)."""
    if len(sizes) < 2:
        return None
    fractions = np.array([s["fraction"] for s in sizes])
    rows = []
    for name in [stage_key(m) for m in sizes[0]["stages"]]:
        per_size = [next(m for m in s["stages"] if stage_key(m) == name) for s in sizes]
        fitted = {}
        for field in ("wall_s", "peak_pss_mb", "peak_anon_mb"):
            values = np.array([m[field] for m in per_size])
            slope, intercept = np.polyfit(fractions, values, 1)
            fitted[field] = max(float(intercept + slope), float(values.max()))
            fitted[f"{field}_slope"] = float(slope)
            fitted[f"{field}_intercept"] = float(intercept)
        # growth: the ratio of per-unit cost at the largest and smallest size (1 = linear)
        small, large = per_size[0], per_size[-1]
        unit = "tokens" if small.get("tokens") else "documents"
        growth = None
        if small.get(unit) and large.get(unit) and name.split("_")[0] in ("corpus", "packing"):
            growth = (large["wall_s"] / large[unit]) / (small["wall_s"] / small[unit])
        rows.append(
            {
                "stage": name,
                "wall_h_full": fitted["wall_s"] / 3600,
                "peak_pss_gb_full": fitted["peak_pss_mb"] / 1024,
                "peak_anon_gb_full": fitted["peak_anon_mb"] / 1024,
                "fits_node_memory": fitted["peak_anon_mb"] / 1024 <= node_mem_gb,
                "cost_per_unit_growth": growth,
                **fitted,
            }
        )
    return rows


# ---- report ------------------------------------------------------------------------------------


def markdown(report: dict) -> str:
    lines = [
        f"# Scale rehearsal ({report['date']})",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}",
        "",
    ]
    for size in report["sizes"]:
        lines += [
            f"## fraction {size['fraction']} of the paper's corpora",
            "",
            "corpora: "
            + ", ".join(
                f"{d} {c['documents']:,} documents / {c['chars'] / 1e6:.1f}M characters"
                for d, c in size["corpora"].items()
            )
            + "; tokens (SmolLM2 tokenizer): "
            + ", ".join(f"{d} {t / 1e6:.2f}M" for d, t in size["tokens"].items()),
            "",
            "| stage | wall s | CPU s | peak PSS MB | peak anonymous MB | documents/s | tokens/s |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in size["stages"]:
            docs = f"{m['documents_per_s']:,.1f}" if m["documents_per_s"] else ""
            toks = f"{m['tokens_per_s']:,.0f}" if m["tokens_per_s"] else ""
            lines.append(
                f"| {m['stage']} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | "
                f"{m['peak_pss_mb']:,.0f} | {m['peak_anon_mb']:,.0f} | {docs} | {toks} |"
            )
        lines.append("")
    if report["extrapolation"]:
        node = report["node"]
        lines += [
            f"## Extrapolated to the paper's corpora (fraction 1), {node['cores']} cores, "
            f"{node['mem_gb']} GB",
            "",
            "Fit `a + b * fraction` per stage over the sizes above (for memory that grows "
            "less than linearly, an upper bound); CPU stages at the measured single-job rate "
            "on this machine's cores. 'Fits memory' compares the anonymous memory with the "
            "node's. Cost-per-unit growth: the per-document (corpus) or per-token (packing) "
            "wall time at the largest size over the smallest (<= 1: at most linear; the fixed "
            "start-up makes small sizes dearer per unit).",
            "",
            "| stage | wall h | peak PSS GB | peak anonymous GB | fits memory | "
            "cost-per-unit growth |",
            "|---|---|---|---|---|---|",
        ]
        for row in report["extrapolation"]:
            growth = row["cost_per_unit_growth"]
            lines.append(
                f"| {row['stage']} | {row['wall_h_full']:.2f} | {row['peak_pss_gb_full']:.1f} | "
                f"{row['peak_anon_gb_full']:.1f} | {'yes' if row['fits_node_memory'] else 'NO'} | "
                f"{f'{growth:.2f}' if growth else ''} |"
            )
        lines.append("")
    sweep = report["length_sweep"]
    lines += [
        "## Per-document cost against the document's length (seconds per million characters)",
        "",
        "| step | "
        + " | ".join(f"{int(k):,} chars" for k in sweep["seconds_per_million_chars"])
        + " | 1M / 10k |",
        "|---|" + "---|" * (len(sweep["seconds_per_million_chars"]) + 1),
    ]
    steps = next(iter(sweep["seconds_per_million_chars"].values()))
    for step in steps:
        cells = [f"{v[step]:.3f}" for v in sweep["seconds_per_million_chars"].values()]
        lines.append(
            f"| {step} | " + " | ".join(cells) + f" | {sweep['growth_1m_over_10k'][step]:.2f} |"
        )
    lines += [
        "",
        f"Autogen copy check: {sweep['copy_check_ms_per_30k_document']:.3f} ms per 30k-character "
        f"document. Hashing: tokenized-data fingerprint {sweep['dataset_fingerprint_gb_per_s']:.2f}"
        f" GB/s, file SHA-256 {sweep['file_sha256_gb_per_s']:.2f} GB/s (one core).",
        "",
    ]
    return "\n".join(lines)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.04])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-steps", type=int, default=2, help="optimizer steps per training")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--node-cores", type=int, default=32)
    parser.add_argument("--node-mem-gb", type=float, default=256)
    args = parser.parse_args(argv)

    from cft.core.io import write_json
    from cft.core.provenance import package_versions

    sizes = [
        rehearse(args.out / f"f{fraction:g}", fraction, args.max_steps, args.threads, args.seed)
        for fraction in sorted(args.fractions)
    ]
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "versions": package_versions(("torch", "transformers", "datasets", "pyarrow", "lm_eval")),
        "node": {"cores": args.node_cores, "mem_gb": args.node_mem_gb},
        "sizes": sizes,
        "extrapolation": extrapolate(sizes, args.node_cores, args.node_mem_gb),
        "length_sweep": length_sweep(args.seed),
    }
    write_json(args.out / "rehearsal.json", report)
    (args.out / "rehearsal.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
