"""The paper-shaped miniature: config/paper.yaml at toy sizes, on local stand-ins for the hub.

Everything the paper config would fetch is laid out on disk exactly as the hub tools leave it,
so the workflow's own download and loading code runs unchanged with HF_HUB_OFFLINE=1:

- models: tiny randomly initialised Llama checkpoints (bf16 safetensors, a byte-level BPE
  tokenizer with a Llama-2-style chat template) under the repo ids of Llama-2-7b-chat and the
  AdaptLLM models, in a huggingface_hub cache (blobs, snapshots/<commit>, refs/main);
- corpora: folders laid out like ywchoi/OpenMedText (category folders of .txt files) and
  ashraq/financial-news-articles (parquet shards with title, text, url);
- evaluation data: datasets caches as an online `load_dataset` leaves them
  (`$HF_HOME/datasets/<org>___<name>/<config>/0.0.0/<hash>/`), with the hub's configs, splits
  and columns: cais/mmlu (two of the six medical subjects), GBaker/MedQA-USMLE-4-options-hf and the
  three TheFinAI FLARE sets, a handful of rows each;
- the authors' synthetic curves, when ../shared has them, in a folder laid out like their
  repository's synthetic-exp/ (only loss.csv and innerprod.csv, as upstream).

    python tests/miniature/build.py <root>   # writes <root>/config.yaml and <root>/hf_home
"""

from __future__ import annotations

import copy
import hashlib
import os
import random
import shutil
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SHARED_SYNTHETIC = REPO.parent / "shared" / "reference" / "synthetic"

HUB_MODELS = {
    "llama-2-7b-chat": "meta-llama/Llama-2-7b-chat-hf",
    "adaptllm-medicine-chat": "AdaptLLM/medicine-chat",
    "adaptllm-finance-chat": "AdaptLLM/finance-chat",
}
# Two of the paper's six MMLU medical subjects: every subject is the same lm-eval task family,
# and each one costs the miniature six evaluation jobs (the chat model, four methods, AdaptLLM).
MMLU_SUBJECTS = ["anatomy", "professional_medicine"]
LLAMA2_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}"
    "{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}{% endfor %}"
)
WORDS = [
    "the",
    "liver",
    "kidney",
    "heart",
    "lung",
    "cell",
    "gene",
    "protein",
    "drug",
    "dose",
    "patient",
    "trial",
    "enzyme",
    "blood",
    "market",
    "shares",
    "profit",
    "revenue",
    "company",
    "bank",
    "rate",
    "bond",
    "stock",
    "quarter",
    "growth",
    "loss",
    "inflation",
    "investors",
    "reported",
    "rose",
    "fell",
    "said",
    "analysts",
    "expected",
    "higher",
    "lower",
    "annual",
    "results",
]


def sentences(rng: random.Random, n: int) -> str:
    return " ".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "."
        for _ in range(n)
    )


# ---- models: a huggingface_hub cache ----------------------------------------------------------


def tokenizer(corpus: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.chat_template = LLAMA2_CHAT_TEMPLATE
    return fast


def model_folder(folder: Path, tok, seed: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,  # head size 32: the smallest vLLM's CPU attention supports
        num_key_value_heads=2,
        max_position_embeddings=4096,  # as Llama-2: vLLM refuses prompts beyond the context
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,  # as Llama-2
    )
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tok.save_pretrained(folder)


def hub_cache(hf_home: Path, repo_id: str, source: Path) -> str:
    """Files as huggingface_hub's cache keeps them: blobs, snapshots/<commit>/ links, refs.
    Returns the commit."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for path in sorted(source.iterdir()):
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.copy(path, blob)
        (snapshot / path.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return commit


# ---- corpora in the hub repos' layouts -----------------------------------------------------------


def openmedtext(root: Path, rng: random.Random) -> list[str]:
    texts = []
    for index in range(12):
        category = ("mdpi/medicine", "mdpi/pharmacology", "textbooks/anatomy")[index % 3]
        path = root / category / f"{index:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = sentences(rng, rng.randint(6, 30))
        path.write_text(text)
        texts.append(text)
    (root / "README.md").write_text("# OpenMedText (miniature)\n")
    return texts


def financial_news(root: Path, rng: random.Random) -> list[str]:
    import pandas as pd

    rows = [
        {
            "title": sentences(rng, 1),
            "text": sentences(rng, rng.randint(6, 30)),
            "url": f"https://news.example/{i}",
        }
        for i in range(12)
    ]
    (root / "data").mkdir(parents=True)
    for shard in range(2):
        pd.DataFrame(rows[shard::2]).to_parquet(
            root / "data" / f"train-{shard:05d}-of-00002.parquet", index=False
        )
    return [row["text"] for row in rows]


# ---- evaluation data: datasets caches as an online load_dataset leaves them -----------------


def datasets_cache(hf_home: Path, repo_id: str, config: str, splits: dict, features) -> None:
    """Build the arrow cache with the datasets Parquet builder under the hub dataset's name and
    config, then place it where datasets 5.x looks offline."""
    import pandas as pd
    from datasets.data_files import DataFilesDict
    from datasets.naming import camelcase_to_snakecase
    from datasets.packaged_modules.parquet.parquet import Parquet

    scratch = hf_home / "scratch" / repo_id.replace("/", "--") / config
    files = {}
    for split, rows in splits.items():
        path = scratch / f"{split}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(path, index=False)
        files[split] = str(path)
    name = repo_id.split("/")[-1]
    builder = Parquet(
        cache_dir=str(scratch / "cache"),
        dataset_name=name,
        config_name=config,
        data_files=DataFilesDict.from_patterns({k: [v] for k, v in files.items()}),
        features=features,
    )
    builder.download_and_prepare()
    built = Path(builder.cache_dir)
    org = repo_id.split("/")[0]
    target = (
        hf_home
        / "datasets"
        / f"{org}___{camelcase_to_snakecase(name)}"
        / config
        / "0.0.0"
        / built.name
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(built, target)
    shutil.rmtree(scratch)


def mmlu_rows(rng: random.Random, subject: str, n: int) -> list[dict]:
    return [
        {
            "question": f"{sentences(rng, 1)[:-1]}?",
            "subject": subject,
            "choices": [" ".join(rng.sample(WORDS, 2)) for _ in range(4)],
            "answer": rng.randrange(4),
        }
        for _ in range(n)
    ]


def medqa_rows(rng: random.Random, n: int) -> list[dict]:
    return [
        {
            "id": f"q{i}",
            "sent1": sentences(rng, 2),
            "sent2": "",
            **{f"ending{k}": " ".join(rng.sample(WORDS, 2)) for k in range(4)},
            "label": rng.randrange(4),
        }
        for i in range(n)
    ]


def evaluation_data(hf_home: Path, rng: random.Random) -> None:
    from datasets import ClassLabel, Features, Sequence, Value

    mmlu = Features(
        {
            "question": Value("string"),
            "subject": Value("string"),
            "choices": Sequence(Value("string")),
            "answer": ClassLabel(names=["A", "B", "C", "D"]),
        }
    )
    for subject in MMLU_SUBJECTS:
        sizes = (("test", 6), ("validation", 2), ("dev", 2))
        splits = {split: mmlu_rows(rng, subject, n) for split, n in sizes}
        datasets_cache(hf_home, "cais/mmlu", subject, splits, mmlu)
    medqa = {s: medqa_rows(rng, n) for s, n in (("train", 2), ("validation", 2), ("test", 6))}
    datasets_cache(hf_home, "GBaker/MedQA-USMLE-4-options-hf", "default", medqa, None)

    import pandas as pd

    from cft.data.finben_demo import all_sets_under, write_sets

    finben = hf_home / "scratch" / "finben"
    write_sets(all_sets_under(finben))
    for name in ("flare-fiqasa", "flare-causal20-sc", "flare-multifin-en"):
        splits = {
            path.name.split("-")[0]: pd.read_parquet(path).to_dict("records")
            for path in sorted((finben / name / "data").glob("*.parquet"))
        }
        datasets_cache(hf_home, f"TheFinAI/{name}", "default", splits, None)
    shutil.rmtree(hf_home / "scratch")


# ---- the config ------------------------------------------------------------------------------


def synthetic_upstream(folder: Path) -> Path:
    """The authors' synthetic-exp/ as their repository lays it out: loss.csv and innerprod.csv,
    and each run's models/{task}_2nn_regression/{condition}/metrics.json ({setting: {model:
    {"mean": [...], "std": [...]}}}), rebuilt from the shared eval_metrics.csv (a row per task,
    condition, setting, model and number of in-context points). Returns the folder."""
    import csv
    import json

    folder.mkdir(parents=True)
    for name in ("loss.csv", "innerprod.csv"):  # what upstream publishes as CSV
        shutil.copy(SHARED_SYNTHETIC / name, folder / name)
    runs: dict = {}
    with (SHARED_SYNTHETIC / "eval_metrics.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            run = runs.setdefault((row["task"], row["method"]), {})
            series = run.setdefault(row["eval_setting"], {}).setdefault(
                row["model"], {"mean": [], "std": []}
            )
            series["mean"].append(float(row["mse_mean"]))
            series["std"].append(float(row["mse_std"]))
    for (task, method), metrics in runs.items():
        path = folder / "models" / task / method / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(metrics, indent=2))
    return folder


def miniature_config(root: Path, reference: Path | None) -> dict:
    """config/paper.yaml with its shape kept (hub models, corpus sources, all methods, the
    baselines, the paper's suites and recipe keys) and toy sizes."""
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config = copy.deepcopy(paper)
    config["grid"]["models"] = ["llama-2-7b-chat"]
    config["models"] = {name: {**paper["models"][name], "dtype": "bfloat16"} for name in HUB_MODELS}
    config["domains"]["biomed"]["source"]["local_path"] = str(root / "corpora" / "biomed")
    config["domains"]["finance"]["source"]["local_path"] = str(root / "corpora" / "finance")
    config["corpus"] = {**paper["corpus"], "min_chars": 20, "validation_fraction": 0.2}
    config["packing"] = {**paper.get("packing", {}), "cpus_per_task": 1, "mem_mb": 3000}
    # vLLM as paper.yaml selects it, on its CPU build (the vLLM environment, cft.core.vllm_env).
    config["autogen"] = {
        **paper["autogen"],
        "gpus": 0,
        "gpu_model": "",
        "cpus_per_task": 2,
        "mem_mb": 3000,
        "runtime": 20,
        "max_new_tokens": 12,
        "shard_size": 4,
    }
    config["training"] = {
        **paper["training"],  # bf16, FULL_SHARD, activation checkpointing, AdamW, cosine, ...
        "max_seq_len": 256,
        "global_batch_size": 4,
        # paper.yaml checkpoints by training time: at toy scale, as soon as the measured cost
        # allows (the two ranks agree on each save through the callback's all-reduce)
        "save_every_minutes": 1e-4,
        # one run per cell: paper.yaml's second seed doubles the jobs through the same code
        # (the tables' seed averaging is tested on its own: tests/unit/test_tables.py)
        "seeds": None,
        "resources": {
            "default": {
                "nodes": 1,
                "gpus_per_node": 0,
                "cpu_processes_per_node": 2,
                "cpus_per_task": 2,
                "mem_mb": 4000,
                "runtime": 30,
                "per_device_batch_size": 1,
            }
        },
    }
    suites = paper["evaluation"]["suites"]
    biomed = [task for task in suites["biomed"] if not task.startswith("mmlu_")]
    config["evaluation"] = {
        **paper["evaluation"],
        "suites": {**suites, "biomed": [f"mmlu_{s}" for s in MMLU_SUBJECTS] + biomed},
        "batch_size": 8,
        "gpus": 0,
        "cpus_per_task": 1,  # a toy model: two evaluations share the two cores
        "mem_mb": 3000,
        "runtime": 20,
    }
    synthetic = paper["synthetic"]
    config["synthetic"] = {
        **synthetic,
        "seeds": [0],
        "gpus": 0,
        "reference": "download" if reference else None,
        "scales": {
            "paper": {
                **synthetic["scales"]["paper"],
                "n_dims": 3,
                "n_points": 5,
                "n_embd": 16,
                "n_layer": 1,
                "n_head": 2,
                "batch_size": 8,
                "pretrain_steps": 20,
                "curriculum_start": 3,
                "curriculum_every": 5,
                "finetune_steps": 20,
                "task_finetune_steps": {"relu": 40},  # paper.yaml's longer relu run, in small
                "eval_every": 10,
                "eval_batch_size": 16,
                "save_every": 10,
            }
        },
    }
    if reference:
        config["synthetic"]["reference_url"] = reference.as_uri()
    return config


def build(root: Path) -> Path:
    """Lay out the stand-ins under ``root`` and write ``root/config.yaml``; returns its path."""
    root = Path(root)
    rng = random.Random(0)
    hf_home = root / "hf_home"
    texts = openmedtext(root / "corpora" / "biomed", rng)
    texts += financial_news(root / "corpora" / "finance", rng)
    tok = tokenizer(texts)
    for seed, (name, repo_id) in enumerate(HUB_MODELS.items()):
        folder = root / "model_sources" / name
        model_folder(folder, tok, seed)
        hub_cache(hf_home, repo_id, folder)
    shutil.rmtree(root / "model_sources")
    evaluation_data(hf_home, rng)
    reference = None
    if (SHARED_SYNTHETIC / "loss.csv").is_file():
        reference = synthetic_upstream(root / "Contextual-Fine-Tuning" / "synthetic-exp")
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(miniature_config(root, reference), sort_keys=False))
    return path


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
