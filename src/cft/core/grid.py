"""The experiment grid: which rows a table has, which training runs each row averages, and
which eval records that makes. One definition, used by the workflow's rules (common.smk) and by
the tables CLI, so the two always ask for the same records."""

from __future__ import annotations

from dataclasses import dataclass

from cft.core.config import training_seeds
from cft.core.methods import METHODS, UNTRAINED, label
from cft.core.paths import EVAL_ROOT, eval_json, run_eval_dir, run_name

MISSING = "—"  # a cell without its result, in tables and figures


# Column titles that say more than the task's name.
COLUMN_TITLES = {"heldout_text": "held-out bits/byte"}


def task_label(task: str) -> str:
    """A task's column title: its name without the suite prefix."""
    if task in COLUMN_TITLES:
        return COLUMN_TITLES[task]
    return task.removeprefix("mmlu_").removeprefix("demo_").replace("_", " ")


@dataclass(frozen=True)
class Row:
    """One row of a (domain, model) table."""

    label: str
    model: str
    method: str  # UNTRAINED for baselines (evaluated as they are)
    variant: str  # the reference file's row name: a method, or "external"


@dataclass(frozen=True)
class CellKey:
    """What one eval record is of: the identity it carries and a table cell asks for."""

    domain: str
    model: str
    method: str
    training_seed: int | None  # None: the untrained model
    task: str

    @classmethod
    def of(cls, record: dict) -> CellKey:
        return cls(*(record[name] for name in cls.__dataclass_fields__))


def trained_methods(config: dict) -> list[str]:
    """Methods that train a model (the untrained row is the base model itself)."""
    return [name for name in config["grid"]["methods"] if METHODS[name].trains]


def row_seeds(config: dict, method: str) -> list[int | None]:
    """The training runs of a row: every configured seed, or none for the untrained row."""
    return [None] if method == UNTRAINED else training_seeds(config)


def suite(config: dict, domain: str) -> list[str]:
    """The tasks of a domain's table, in column order."""
    return list(config["evaluation"]["suites"].get(domain, []))


def table_rows(config: dict, domain: str, model: str) -> list[Row]:
    """The grid's methods on ``model``, then the domain's external baselines."""
    rows = [Row(label(m), model, m, m) for m in config["grid"]["methods"]]
    rows += [
        Row(baseline["label"], baseline["model"], UNTRAINED, "external")
        for baseline in config["baselines"].values()
        if baseline["domain"] == domain
    ]
    return rows


def eval_rows(config: dict) -> list[tuple[str, str, str]]:
    """(domain, model, method) of every table row: the grid, plus baselines as `chat` rows."""
    grid = config["grid"]
    rows = [
        (d, m, method)
        for d in grid["domains"]
        for m in grid["models"]
        for method in grid["methods"]
    ]
    rows += [(b["domain"], b["model"], UNTRAINED) for b in config["baselines"].values()]
    return list(dict.fromkeys(rows))


def row_cells(config: dict, domain: str, model: str, method: str) -> list[CellKey]:
    """The eval records of a table row: every task of its domain, for every training run."""
    return [
        CellKey(domain, model, method, seed, task)
        for seed in row_seeds(config, method)
        for task in suite(config, domain)
    ]


def table_cells(config: dict, domain: str, model: str) -> list[CellKey]:
    """Every eval record a (domain, model) table is built from."""
    return [
        cell
        for row in table_rows(config, domain, model)
        for cell in row_cells(config, domain, row.model, row.method)
    ]


def record_path(cell: CellKey, root: str = EVAL_ROOT) -> str:
    return eval_json(cell.domain, cell.model, cell.method, cell.training_seed, cell.task, root)


def run_folders(cells: list[CellKey], root: str = EVAL_ROOT) -> list[str]:
    """The folders the cells' records lie in, each once, in order: one evaluation job writes
    each folder."""
    return list(
        dict.fromkeys(
            run_eval_dir(cell.domain, cell.model, run_name(cell.method, cell.training_seed), root)
            for cell in cells
        )
    )


def table_folders(config: dict, domain: str, model: str, root: str = EVAL_ROOT) -> list[str]:
    """The eval folders of a (domain, model) table (its records lie in them)."""
    return run_folders(table_cells(config, domain, model), root)


def table_records(config: dict, domain: str, model: str, root: str = EVAL_ROOT) -> list[str]:
    """The eval record files of a (domain, model) table under ``root``."""
    return [record_path(cell, root) for cell in table_cells(config, domain, model)]
