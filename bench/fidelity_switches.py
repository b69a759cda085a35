"""Demo-scale effect of the fidelity switches that can move results (docs/fidelity.md).

Trains CFT on the demo corpora (packaged SmolLM2-135M, CPU) under four recipes and scores each
on the held-out fictional-knowledge questions (lm-eval's cloze task, per-question logs):

- ``packed-fp32``: the demo's recipe (packed blocks, fp32);
- ``document-fp32``: the authors' per-document chunks, everything else equal;
- ``packed-bf16-mixed``: bf16 compute over fp32 master weights;
- ``packed-bf16-pure``: the authors' pure bf16 (weights and AdamW state in bf16).

For every pair that differs in one switch it reports the paired difference per question, of
accuracy and of the log-likelihood margin (correct option minus the best distractor), with a
95% bootstrap interval over questions (10,000 resamples, seeded).

    .venv/bin/python bench/fidelity_switches.py --out bench-results/fidelity
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cft.core.config import load_config  # noqa: E402
from cft.evaluation import evaluate as evaluation  # noqa: E402
from cft.packing import tokenize as packing  # noqa: E402
from cft.training.launch import train_resources  # noqa: E402
from cft.training.recipe import Job  # noqa: E402
from cft.training.run import train  # noqa: E402

MODEL = "smollm2-135m-instruct"
VARIANTS = {
    "packed-fp32": {"packing": {"mode": "packed"}, "training": {}},
    "document-fp32": {"packing": {"mode": "document"}, "training": {}},
    "packed-bf16-mixed": {
        "packing": {"mode": "packed"},
        "training": {"precision": "bf16", "master_weights": "fp32"},
    },
    "packed-bf16-pure": {
        "packing": {"mode": "packed"},
        "training": {"precision": "bf16", "master_weights": "bf16"},
    },
}
PAIRS = [
    ("document-fp32", "packed-fp32", "packing: document - packed"),
    ("packed-bf16-pure", "packed-bf16-mixed", "master weights: pure bf16 - fp32"),
]


def per_question(samples_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(correct 0/1, log-likelihood margin) per question, in doc order."""
    rows = sorted(
        (json.loads(line) for line in samples_file.read_text().splitlines()),
        key=lambda r: r["doc_id"],
    )
    correct, margin = [], []
    for row in rows:
        scores = np.array([float(resp[0]) for resp in row["filtered_resps"]])
        target = int(row["target"])
        others = np.delete(scores, target)
        correct.append(float(np.argmax(scores) == target))
        margin.append(scores[target] - others.max())
    return np.array(correct), np.array(margin)


def paired_interval(diff: np.ndarray, seed: int = 0, resamples: int = 10_000) -> tuple:
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def prepare(workdir: Path) -> None:
    """The demo's corpora and converted base model, by the workflow itself."""
    targets = [f"results/corpus/{d}/documents.parquet" for d in ("biomed", "finance")]
    targets.append(f"results/base_models/{MODEL}")
    subprocess.run(
        [
            str(Path(sys.executable).parent / "snakemake"),
            "-s",
            str(REPO / "workflow" / "Snakefile"),
            "--cores",
            "2",
            "--directory",
            str(workdir),
            *targets,  # before --configfile, which takes several values
            "--configfile",
            str(REPO / "config" / "config.yaml"),
        ],
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def run_variant(base_config: dict, name: str, domain: str, workdir: Path) -> Path:
    config = copy.deepcopy(base_config)
    for section, values in VARIANTS[name].items():
        config[section].update(values)
    key = workdir / "variants" / name / domain
    tokenized = key / "tokenized"
    if not tokenized.exists():
        packing.run(
            config,
            domain,
            MODEL,
            "cft",
            corpus_table=workdir / f"results/corpus/{domain}/documents.parquet",
            tokenizer_dir=workdir / f"results/base_models/{MODEL}",
            out_dir=tokenized,
            threads=2,
        )
    model_dir = key / "model"
    if not model_dir.exists():
        train(
            Job(
                config=config,
                domain=domain,
                model=MODEL,
                method="cft",
                tokenized_dir=str(tokenized),
                base_model_dir=str(workdir / f"results/base_models/{MODEL}"),
                out_dir=str(model_dir),
                checkpoint_dir=str(key / "checkpoints"),
                resources=train_resources(config, MODEL),
            )
        )
    task = f"demo_knowledge_{domain}_cloze"
    samples = key / f"{task}.samples.jsonl"
    if not samples.exists():
        evaluation.run(
            config,
            domain,
            MODEL,
            "cft",
            task,
            model_dir=model_dir,
            out_json=key / f"{task}.json",
            samples_jsonl=samples,
        )
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-results/fidelity", help="work folder")
    args = parser.parse_args()
    workdir = Path(args.out).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    prepare(workdir)
    config = load_config(REPO / "config" / "config.yaml")
    os.chdir(workdir)  # the demo tasks read results/demo_data/... relative to the working folder
    questions = {}
    for domain in ("biomed", "finance"):
        for name in VARIANTS:
            questions[name, domain] = per_question(run_variant(config, name, domain, workdir))
    result = {"variants": {}, "pairs": []}
    for (name, domain), (correct, margin) in questions.items():
        result["variants"][f"{name}/{domain}"] = {
            "questions": len(correct),
            "accuracy": float(correct.mean()),
            "margin": float(margin.mean()),
        }
    for a, b, label in PAIRS:
        for domain in ("biomed", "finance"):
            (ca, ma), (cb, mb) = questions[a, domain], questions[b, domain]
            result["pairs"].append(
                {
                    "switch": label,
                    "domain": domain,
                    "questions": len(ca),
                    "accuracy_diff": paired_interval(ca - cb),
                    "margin_diff": paired_interval(ma - mb),
                }
            )
    (workdir / "summary.json").write_text(json.dumps(result, indent=2))
    print(
        "| switch | domain | questions | accuracy diff (points) [95% CI] | margin diff [95% CI] |"
    )
    print("|---|---|---|---|---|")
    for pair in result["pairs"]:
        acc, mar = pair["accuracy_diff"], pair["margin_diff"]
        print(
            f"| {pair['switch']} | {pair['domain']} | {pair['questions']} | "
            f"{100 * acc[0]:+.1f} [{100 * acc[1]:+.1f}, {100 * acc[2]:+.1f}] | "
            f"{mar[0]:+.3f} [{mar[1]:+.3f}, {mar[2]:+.3f}] |"
        )
    for name, record in result["variants"].items():
        print(f"{name}: accuracy {100 * record['accuracy']:.1f}, margin {record['margin']:+.3f}")


if __name__ == "__main__":
    main()
