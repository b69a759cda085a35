"""Small project-written classification sets in the FinBen (FLARE) format, laid out like the hub.

The paper's financial benchmarks (TheFinAI/flare-fiqasa, flare-causal20-sc, flare-multifin-en)
are gated hub datasets. These sets have the same columns (id, query, answer, text, choices,
gold), the same label sets and the same split names (FiQA-SA's validation split is ``valid``),
written as ``<name>/data/<split>-00000-of-00001.parquet`` as on the hub, so the finance task
code (src/cft/evaluation/lm_eval_tasks/finben) runs offline: in the demo suite and in the tests.
The texts are about fictional companies; the labels follow from the templates.

    python -m cft.data.finben_demo --out-dir results/demo_data/finben
"""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path

from cft.core.cli import program_name
from cft.core.io import atomic_path
from cft.core.logging_utils import setup_logging

log = logging.getLogger(__name__)

COMPANIES = ["Vorlenta", "Quastro Holdings", "Meridane", "Talvix", "Oberkamp", "Sunderic"]

FIQASA = {
    "query": (
        "What is the sentiment of the following financial post: Positive, Negative, or "
        "Neutral?\nText: {text}\nAnswer:"
    ),
    "choices": ["negative", "positive", "neutral"],
    "texts": {
        "negative": [
            "{c} shares slump after the company cuts its annual forecast",
            "{c} misses earnings estimates as costs climb",
            "Investors dump {c} after a second profit warning",
        ],
        "positive": [
            "{c} shares jump after record quarterly profit",
            "{c} beats estimates and raises its dividend",
            "Analysts upgrade {c} on strong order growth",
        ],
        "neutral": [
            "{c} will publish its quarterly results on Thursday",
            "{c} appoints a new head of investor relations",
            "{c} moves its annual meeting to the spring",
        ],
    },
}
CAUSAL20 = {
    "query": (
        "Does the following sentence describe a causal relation between financial events? "
        "Answer with noise or causal.\nText: {text}\nAnswer:"
    ),
    "choices": ["noise", "causal"],
    "texts": {
        "noise": [
            "{c} is headquartered in a city with two airports.",
            "The chief executive of {c} spoke at a conference last week.",
            "{c} has published annual reports since its founding.",
        ],
        "causal": [
            "{c} closed two plants because demand for its products fell.",
            "Higher fuel prices pushed {c} into a quarterly loss.",
            "{c} raised prices after its supplier costs doubled.",
        ],
    },
}
MULTIFIN = {
    "query": (
        "Classify the topic of the financial headline: finance, technology, tax & accounting, "
        "business & management, government & controls, or industry.\nText: {text}\nAnswer:"
    ),
    "choices": [
        "finance",
        "technology",
        "tax & accounting",
        "business & management",
        "government & controls",
        "industry",
    ],
    "texts": {
        "finance": ["{c} issues new bonds to refinance its debt"],
        "technology": ["{c} moves its ledgers to a cloud platform"],
        "tax & accounting": ["{c} restates revenue under the new accounting standard"],
        "business & management": ["{c} names a new chief operating officer"],
        "government & controls": ["Regulator opens an inquiry into {c}'s reporting"],
        "industry": ["{c} opens a steel mill in the north"],
    },
}
# hub name -> (spec, {split: number of rows})
SETS = {
    "flare-fiqasa": (FIQASA, {"train": 12, "valid": 9, "test": 18}),
    "flare-causal20-sc": (CAUSAL20, {"test": 18}),
    "flare-multifin-en": (MULTIFIN, {"test": 18}),
}


def rows(name: str, spec: dict, split: str, n: int, seed: int) -> list[dict]:
    """``n`` rows cycling through the labels, so every class is present."""
    rng = random.Random(f"{name}:{split}:{seed}")
    labels = list(spec["texts"])
    out = []
    for i in range(n):
        label = labels[i % len(labels)]
        text = rng.choice(spec["texts"][label]).format(c=rng.choice(COMPANIES))
        out.append(
            {
                "id": f"{name}-{split}-{i}",
                "query": spec["query"].format(text=text),
                "answer": label,
                "text": text,
                "choices": spec["choices"],
                "gold": spec["choices"].index(label),
            }
        )
    return out


def write_sets(out_dirs: dict[str, Path], seed: int = 0) -> dict[str, dict[str, int]]:
    """Write each set named in ``out_dirs`` ({set name: folder}) in the hub layout; returns
    rows per set and split."""
    import pandas as pd

    unknown = sorted(set(out_dirs) - set(SETS))
    if unknown:
        raise ValueError(f"no offline FinBen set named {unknown}; the sets are {list(SETS)}")
    counts = {}
    for name, out_dir in out_dirs.items():
        spec, splits = SETS[name]
        with atomic_path(Path(out_dir)) as tmp:
            (tmp / "data").mkdir(parents=True)
            for split, n in splits.items():
                table = pd.DataFrame(rows(name, spec, split, n, seed))
                table.to_parquet(tmp / "data" / f"{split}-00000-of-00001.parquet", index=False)
        counts[name] = dict(splits)
    return counts


def all_sets_under(folder: Path) -> dict[str, Path]:
    """Every set, each in a folder of its name under ``folder`` (the workflow's layout)."""
    return {name: Path(folder) / name for name in SETS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=program_name(), description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out-dir", required=True, help="a folder; each set is written in a folder of its name"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    setup_logging()
    log.info("wrote %s", write_sets(all_sets_under(Path(args.out_dir)), args.seed))


if __name__ == "__main__":
    main()
