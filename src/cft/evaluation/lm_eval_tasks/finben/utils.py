"""Scoring of the FinBen classification tasks, under both protocols.

- **Log-likelihood** (``_finben_template_yaml``): the label word with the highest
  log-likelihood after the ``query`` prompt is the prediction (:func:`process_results`).
- **Generative** (``_finben_generative_template_yaml``), PIXIU/FinBen's own protocol
  (``Classification.process_results`` in The-FinAI/PIXIU ``src/tasks/flare.py``): greedy
  generation from the ``query`` prompt; the output stripped and lower-cased; the first choice,
  in the order of the ``choices`` list, found in it as a substring (lower-cased) is the
  prediction; if none is found, the answer is "missing" and counts as wrong
  (:func:`parse_choice`, :func:`process_generation`).

Each question keeps its (gold, prediction) pair, prediction -1 for "missing", and the
aggregations compute over all pairs of the task as PIXIU does: F1 with scikit-learn over the
labels that occur as gold (weighted, macro), Matthews' correlation with predictions of any
other label (a label never gold, or "missing") counted as one class, and the missing rate.
Micro F1 (same labels) is the project's extension: PIXIU computes none, the FinBen leaderboard
reports it for MultiFin.
"""

from __future__ import annotations

import numpy as np

MISSING = -1  # the prediction of an output in which no choice was found


def process_results(doc: dict, results) -> dict:
    # lm-eval hands multiple-choice results as (loglikelihood, is_greedy) per choice.
    lls = [r[0] if isinstance(r, tuple | list) else r for r in results]
    pred = int(np.argmax(lls))
    gold = int(doc["gold"])
    return {"acc": float(pred == gold), "weighted_f1": (gold, pred), "macro_f1": (gold, pred)}


def parse_choice(output: str, choices: list[str]) -> int:
    """The index of the first choice (in list order) that the lower-cased output contains, or
    :data:`MISSING`."""
    text = output.strip().lower()
    for index, choice in enumerate(choices):
        if choice.lower() in text:
            return index
    return MISSING


def process_generation(doc: dict, results) -> dict:
    pred = parse_choice(results[0], list(doc["choices"]))
    gold = int(doc["gold"])
    pair = (gold, pred)
    return {
        "acc": float(pred == gold),
        "missing": float(pred == MISSING),
        "weighted_f1": pair,
        "macro_f1": pair,
        "micro_f1": pair,
        "mcc": pair,
    }


def _f1(pairs, average: str) -> float:
    from sklearn.metrics import f1_score

    gold, pred = zip(*pairs, strict=True)
    return float(f1_score(gold, pred, average=average, labels=sorted(set(gold))))


def weighted_f1(pairs) -> float:
    return _f1(pairs, "weighted")


def macro_f1(pairs) -> float:
    return _f1(pairs, "macro")


def micro_f1(pairs) -> float:
    return _f1(pairs, "micro")


def mcc(pairs) -> float:
    from sklearn.metrics import matthews_corrcoef

    gold, pred = zip(*pairs, strict=True)
    labels = set(gold)
    return float(matthews_corrcoef(gold, [p if p in labels else MISSING for p in pred]))
