"""Scoring of the FinBen classification tasks: accuracy, weighted and macro F1.

``process_results`` turns the loglikelihood of each label into a prediction and keeps
(gold, prediction) pairs; the aggregations compute F1 over all pairs of the task with
scikit-learn, as FinBen does (weighted F1 is its headline metric).
"""

from __future__ import annotations

import numpy as np


def process_results(doc: dict, results) -> dict:
    # lm-eval hands multiple-choice results as (loglikelihood, is_greedy) per choice.
    lls = [r[0] if isinstance(r, tuple | list) else r for r in results]
    pred = int(np.argmax(lls))
    gold = int(doc["gold"])
    return {"acc": float(pred == gold), "weighted_f1": (gold, pred), "macro_f1": (gold, pred)}


def _f1(pairs, average: str) -> float:
    from sklearn.metrics import f1_score

    gold, pred = zip(*pairs, strict=True)
    return float(f1_score(gold, pred, average=average))


def weighted_f1(pairs) -> float:
    return _f1(pairs, "weighted")


def macro_f1(pairs) -> float:
    return _f1(pairs, "macro")
