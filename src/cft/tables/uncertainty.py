"""Confidence intervals for the result tables, from lm-eval's per-sample logs.

Every score is a statistic of per-question outcomes: accuracy is the mean of 0/1 correctness,
FinBen's weighted F1 is computed from (gold, prediction) pairs, the held-out text's bits per
byte from (log-likelihood, bytes) pairs of its documents, and the log-likelihood margin
(the correct option's log-likelihood minus the best distractor's) is a continuous score of the
same multiple-choice questions. Intervals are percentile bootstraps:

- over questions: resample the task's questions with replacement, recompute the statistic
  (``resample="questions"``, the unit of lm-eval's own stderr); or, with ``resample="facts"``,
  resample groups of questions that ask the same thing (the demo asks every fact in several
  wordings, recorded as the document's ``fact``) as wholes: a cluster bootstrap, which does
  not count agreeing wordings of one fact as independent evidence;
- over training seeds too, where a row has several: each replicate also resamples the row's
  seeds with replacement and averages the statistic over them (seeds are independent runs, so
  they are drawn independently per row);
- paired differences (a row minus a reference row) use the *same* resampled questions for both
  rows, which removes the between-question variance the two rows share;
- a table's Average column (the unweighted mean of its tasks) resamples each task on its own
  and averages the replicates.

All draws come from one seeded generator per table, so the same inputs give the same intervals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cft.core.errors import CftError

LEVEL = 0.95


class SamplesError(CftError, ValueError):
    """A per-sample log that cannot be scored; the message names the file."""


@dataclass(frozen=True)
class Outcomes:
    """One model's per-question outcomes on one task, sorted by lm-eval's doc_id."""

    metric: str  # "acc" (0/1 per question), or one of PAIR_METRICS ((gold, prediction) each)
    doc_ids: np.ndarray  # (n,)
    values: np.ndarray  # (n,) for 0/1 or real scores, (n, 2) for the pair metrics
    margins: np.ndarray | None = None  # (n,) log-likelihood margins, multiple choice only
    clusters: np.ndarray | None = None  # (n,) group codes 0..C-1; None: every question alone

    @property
    def n(self) -> int:
        return len(self.doc_ids)


def _loglikelihoods(sample: dict) -> list[float] | None:
    """Per-choice log-likelihoods of a multiple-choice sample (lm-eval logs each choice as
    [loglikelihood, is_greedy]); None for other output types."""
    responses = sample.get("filtered_resps")
    if not isinstance(responses, list) or len(responses) < 2:
        return None
    try:
        return [float(r[0] if isinstance(r, list | tuple) else r) for r in responses]
    except (TypeError, ValueError):
        return None


CLUSTER_FIELD = "fact"  # the document field that groups questions asking the same thing


def read_outcomes(path: Path, metric: str) -> Outcomes:
    """Per-question outcomes of ``metric`` from a per-sample JSONL written by the evaluate
    stage (one lm-eval sample per line)."""
    doc_ids, values, margins, groups = [], [], [], []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise SamplesError(f"{path}: cannot read the per-sample log ({err})") from err
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
            value = sample[metric]
            doc_ids.append(int(sample["doc_id"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise SamplesError(
                f"{path}:{number}: expected an lm-eval sample with doc_id and {metric!r} "
                f"({type(err).__name__}: {err})"
            ) from err
        if metric in PAIR_METRICS:
            values.append([int(v) for v in value])
        elif metric in RATIO_METRICS:
            values.append([float(v) for v in value])
        else:
            values.append(float(value))
        doc = sample.get("doc")
        groups.append(doc.get(CLUSTER_FIELD) if isinstance(doc, dict) else None)
        lls = _loglikelihoods(sample)
        target = sample.get("target")
        if lls is not None and isinstance(target, int) and 0 <= target < len(lls):
            others = [ll for i, ll in enumerate(lls) if i != target]
            margins.append(lls[target] - max(others))
    if not doc_ids:
        raise SamplesError(f"{path}: no samples")
    order = np.argsort(doc_ids, kind="stable")
    clusters = None
    if all(group is not None for group in groups):
        clusters = np.unique([str(g) for g in groups], return_inverse=True)[1][order]
    return Outcomes(
        metric,
        np.asarray(doc_ids)[order],
        np.asarray(values, dtype=float)[order],
        np.asarray(margins)[order] if len(margins) == len(doc_ids) else None,
        clusters,
    )


# Scores of (gold, prediction) pairs, prediction -1 where a generated answer named no choice;
# computed as FinBen computes them, over the labels that occur as gold (lm_eval_tasks/finben).
PAIR_METRICS = ("weighted_f1", "macro_f1", "micro_f1", "mcc")
# Scores of (log-likelihood, bytes) per document, pooled over documents as lm-eval pools them
# (its bits_per_byte aggregation): the held-out text's, where lower is better.
RATIO_METRICS = ("bits_per_byte",)


def statistic(metric: str, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The metric over questions weighted by how often a resample drew them: one value per
    row of ``weights`` ((B, n) -> (B,)); all-ones weights give the plain statistic.

    Pair metrics as scikit-learn's on the resampled questions with ``labels`` = the gold
    labels present: per class F1 = 2·TP / (support + predicted), 0 when both are 0; weighted
    by support, averaged over the present classes (macro), or pooled (micro: predictions of
    other labels count against precision only through the classes present); Matthews'
    correlation from the confusion matrix, predictions outside the present gold labels (and
    missing answers) pooled as one class."""
    total = weights.sum(axis=1)
    if metric in RATIO_METRICS:  # -sum(loglikelihood) / sum(bytes) / ln 2
        return -(weights @ values[:, 0]) / (weights @ values[:, 1]) / np.log(2)
    if metric not in PAIR_METRICS:
        return weights @ values / total
    gold, pred = values[:, 0].astype(int), values[:, 1].astype(int)
    labels = np.unique(gold)
    support = np.stack([weights @ (gold == label) for label in labels])  # (L, B)
    predicted = np.stack([weights @ (pred == label) for label in labels])
    hits = np.stack([weights @ ((gold == label) & (pred == label)) for label in labels])
    present = support > 0
    predicted = np.where(present, predicted, 0.0)  # a label absent from the gold: "other"
    if metric == "mcc":
        correct, other = hits.sum(0), total - predicted.sum(0)
        covariance = correct * total - (support * predicted).sum(0)
        spread_pred = total**2 - (predicted**2).sum(0) - other**2
        spread_gold = total**2 - (support**2).sum(0)
        denominator = np.sqrt(spread_pred * spread_gold)
        return np.divide(covariance, denominator, out=np.zeros(len(total)), where=denominator > 0)
    if metric == "micro_f1":
        pooled = support.sum(0) + predicted.sum(0)
        return np.divide(2 * hits.sum(0), pooled, out=np.zeros(len(total)), where=pooled > 0)
    denominator = support + predicted
    f1 = np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=denominator > 0)
    if metric == "macro_f1":
        return (f1 * present).sum(0) / present.sum(0)
    return (support * f1).sum(0) / total


def score(outcomes: Outcomes, which: str = "metric") -> np.ndarray:
    """Point values of ``which`` ("metric" or "margin") as a (1,) array."""
    ones = np.ones((1, outcomes.n))
    return _replicates([outcomes], which, ones, np.zeros((1, 1), int))


def _replicates(
    runs: list[Outcomes], which: str, weights: np.ndarray, seed_draw: np.ndarray
) -> np.ndarray:
    """(B,) replicates: for each b, the mean over the drawn seeds ``seed_draw[b]`` of the
    statistic on the questions weighted by ``weights[b]``."""
    if which == "margin":
        per_seed = np.stack([weights @ run.margins / weights.sum(axis=1) for run in runs])
    else:
        per_seed = np.stack([statistic(run.metric, run.values, weights) for run in runs])
    return per_seed[seed_draw, np.arange(len(weights))[:, None]].mean(axis=1)


def resample_weights(rng: np.random.Generator, iters: int, clusters: np.ndarray) -> np.ndarray:
    """(iters, n) draw counts per question: clusters drawn with replacement, each question
    counted as often as its cluster was drawn."""
    n_clusters = int(clusters.max()) + 1
    draws = rng.integers(0, n_clusters, size=(iters, n_clusters))
    counts = np.zeros((iters, n_clusters))
    np.add.at(counts, (np.arange(iters)[:, None], draws), 1)
    return counts[:, clusters]


@dataclass
class Bootstrap:
    """Seeded bootstrap draws shared by every cell of one table: question indices per task
    (the same for every row, which makes differences paired) and seed draws per row."""

    iters: int = 2000
    seed: int = 0
    level: float = LEVEL
    resample: str = "questions"  # or "facts": questions sharing a fact are drawn together
    _rng: np.random.Generator = field(init=False, repr=False)
    _weights: dict = field(default_factory=dict, init=False, repr=False)
    _seeds: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        self._rng = np.random.default_rng(self.seed)

    def weights(self, task: str, outcomes: Outcomes) -> np.ndarray:
        """The task's (iters, n) resample weights, drawn once and shared by every row."""
        grouped = self.resample == "facts" and outcomes.clusters is not None
        clusters = outcomes.clusters if grouped else np.arange(outcomes.n)
        key = (task, outcomes.n, clusters.tobytes())
        if key not in self._weights:
            self._weights[key] = resample_weights(self._rng, self.iters, clusters)
        return self._weights[key]

    def seeds(self, row: str, n_seeds: int) -> np.ndarray:
        if (row, n_seeds) not in self._seeds:
            self._seeds[(row, n_seeds)] = self._rng.integers(0, n_seeds, size=(self.iters, n_seeds))
        return self._seeds[(row, n_seeds)]

    def replicates(self, row: str, cells: dict[str, list[Outcomes]], which: str) -> np.ndarray:
        """(B,) replicates of a row's mean over ``cells`` ({task: outcomes per seed})."""
        total = np.zeros(self.iters)
        for task, runs in cells.items():
            _check_same_questions(task, runs)
            weights = self.weights(task, runs[0])
            total += _replicates(runs, which, weights, self.seeds(row, len(runs)))
        return total / len(cells)

    def interval(self, replicates: np.ndarray) -> tuple[float, float]:
        tail = 100 * (1 - self.level) / 2
        low, high = np.percentile(replicates, [tail, 100 - tail])
        return float(low), float(high)


def bootstrap_of(confidence: dict) -> Bootstrap:
    """The Bootstrap of a config's ``evaluation.confidence``."""
    return Bootstrap(
        iters=confidence["bootstrap_iters"],
        seed=confidence["seed"],
        level=confidence["level"],
        resample=confidence["resample"],
    )


def point(cells: dict[str, list[Outcomes]], which: str = "metric") -> float:
    """A row's value over ``cells``: the mean over tasks of the mean over seeds."""
    per_task = [np.mean([score(run, which)[0] for run in runs]) for runs in cells.values()]
    return float(np.mean(per_task))


def _check_same_questions(task: str, runs: list[Outcomes]) -> None:
    for run in runs[1:]:
        if not np.array_equal(run.doc_ids, runs[0].doc_ids):
            raise SamplesError(
                f"task {task!r}: the runs of one row were scored on different questions "
                f"({runs[0].n} vs {run.n} samples); rerun their evaluations with one setting"
            )


def paired_check(task: str, a: list[Outcomes], b: list[Outcomes]) -> None:
    """Paired differences need both rows scored on the same questions."""
    if not np.array_equal(a[0].doc_ids, b[0].doc_ids) or (
        (a[0].clusters is None) != (b[0].clusters is None)
        or (a[0].clusters is not None and not np.array_equal(a[0].clusters, b[0].clusters))
    ):
        raise SamplesError(
            f"task {task!r}: two rows of one table were scored on different questions "
            f"({a[0].n} vs {b[0].n} samples; was evaluation.limit changed between them?)"
        )


@dataclass(frozen=True)
class Estimate:
    """A value with its interval, in the table's units."""

    value: float
    low: float
    high: float

    def scaled(self, factor: float) -> Estimate:
        return Estimate(self.value * factor, self.low * factor, self.high * factor)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def estimate(boot: Bootstrap, row: str, cells: dict, which: str = "metric") -> Estimate:
    return Estimate(point(cells, which), *boot.interval(boot.replicates(row, cells, which)))


def paired_estimate(
    boot: Bootstrap, row: str, cells: dict, reference: str, reference_cells: dict, which="metric"
) -> Estimate:
    """``row`` minus ``reference`` over the same questions."""
    for task in cells:
        paired_check(task, cells[task], reference_cells[task])
    diff = boot.replicates(row, cells, which) - boot.replicates(reference, reference_cells, which)
    value = point(cells, which) - point(reference_cells, which)
    return Estimate(value, *boot.interval(diff))
