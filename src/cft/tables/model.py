"""The table of one (domain, model): its rows, our scores and the paper's, their intervals and
paired differences, and its JSON form. Built by :mod:`cft.tables.table`, rendered by
:mod:`cft.tables.formats` and drawn by :mod:`cft.tables.figures`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cft.core.grid import Row
from cft.tables.uncertainty import RATIO_METRICS


@dataclass
class Table:
    domain: str
    model: str
    tasks: list[str]
    rows: list[Row]
    metrics: dict  # task -> the score reported for it (its YAML's; task_folders.reported_metric)
    ours: dict = field(default_factory=dict)  # (row label, task) -> percent (or bits per byte)
    paper: dict = field(default_factory=dict)  # (row label, task) -> percent
    missing: list[str] = field(default_factory=list)  # result files not found
    # (row label, column) -> Estimate in percent, the average column included
    intervals: dict = field(default_factory=dict)
    # reference row label -> {(row label, column) -> Estimate}: row minus reference, paired
    paired: dict = field(default_factory=dict)
    # (row label, task) -> Estimate of the mean log-likelihood margin (multiple choice)
    margins: dict = field(default_factory=dict)
    paired_margins: dict = field(default_factory=dict)
    # (row label, task) -> {metric: Estimate in percent}: the task's secondary scores (FinBen's
    # generative protocol: accuracy, macro and micro F1, MCC x 100, missing rate)
    secondary: dict = field(default_factory=dict)
    seeds: dict = field(default_factory=dict)  # row label -> number of training runs
    bootstrap: dict = field(default_factory=dict)  # iterations, seed, level

    def lower_is_better(self, column: str) -> bool:
        """A column of bits per byte (the held-out text), not a percentage of right answers."""
        return self.metrics.get(column) in RATIO_METRICS

    def scale(self, task: str) -> float:
        """The factor from a task's score to the table's unit: percent, or bits per byte as
        they are."""
        return 1.0 if self.lower_is_better(task) else 100.0

    def digits(self, column: str) -> int:
        """Decimals of a column's values: 2 for percent, 3 for bits per byte."""
        return 3 if self.lower_is_better(column) else 2

    def interval_digits(self, column: str) -> int:
        """Decimals of a column's intervals and differences: 1 for percent, 3 for bits per
        byte."""
        return 3 if self.lower_is_better(column) else 1

    @property
    def averaged(self) -> list[str]:
        """The tasks the Average column averages: the percentage scores (as in the paper)."""
        return [task for task in self.tasks if not self.lower_is_better(task)]

    def average(self, values: dict, label: str) -> float | None:
        cells = [values.get((label, task)) for task in self.averaged]
        if not cells or any(v is None for v in cells):
            return None
        return sum(cells) / len(cells)

    def columns(self) -> list[str]:
        return [*self.tasks, "average"] if self.averaged else list(self.tasks)

    def value(self, values: dict, label: str, column: str) -> float | None:
        return self.average(values, label) if column == "average" else values.get((label, column))

    @property
    def has_paper(self) -> bool:
        return bool(self.paper)

    @property
    def extensions(self) -> list[str]:
        """Rows the paper reports no number for, in a table it does report: the project's
        extensions of its grid (e.g. TextAdaptCFT outside 7B biomedical)."""
        if not self.has_paper:
            return []
        reported = {label for label, _ in self.paper}
        return [row.label for row in self.rows if row.label not in reported]

    def best(self, column: str) -> float | None:
        scores = [self.value(self.ours, r.label, column) for r in self.rows]
        scores = [s for s in scores if s is not None]
        if not scores:
            return None
        return min(scores) if self.lower_is_better(column) else max(scores)

    def as_json(self) -> dict:
        """The table as the JSON beside its renderings (``table.json``): keys ``row|column``."""
        return {
            "domain": self.domain,
            "model": self.model,
            "tasks": self.tasks,
            "rows": [r.label for r in self.rows],
            "ours": {f"{k[0]}|{k[1]}": v for k, v in self.ours.items()},
            "paper": {f"{k[0]}|{k[1]}": v for k, v in self.paper.items()},
            "intervals": _estimates_json(self.intervals),
            "paired": {ref: _estimates_json(cells) for ref, cells in self.paired.items()},
            "margins": _estimates_json(self.margins),
            "secondary": {
                f"{k[0]}|{k[1]}": {metric: asdict(e) for metric, e in v.items()}
                for k, v in self.secondary.items()
                if v
            },
            "paired_margins": {
                ref: _estimates_json(cells) for ref, cells in self.paired_margins.items()
            },
            "seeds": self.seeds,
            "extensions": self.extensions,
            "bootstrap": self.bootstrap,
            "missing": self.missing,
        }


def _estimates_json(cells: dict) -> dict:
    """{(row, column): Estimate} as {"row|column": {"value", "low", "high"}}."""
    return {f"{k[0]}|{k[1]}": asdict(v) for k, v in cells.items()}
