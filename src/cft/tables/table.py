"""Result tables in the paper's layout, with the paper's numbers beside ours, and their figures.

One table per (domain, model): rows are the methods (Chat, Chat (CPT), Chat (CFT), Chat (-CFT),
Chat (TextAdaptCFT)) and the domain's external baselines; columns are the domain's tasks in
suite order, plus Average, the unweighted mean of the task columns (as in the paper). Scores are
percentages of the score each task's YAML declares (accuracy; weighted F1 for FinBen); the
held-out text (task ``heldout_text``, not a paper metric) is in bits per byte, lower is
better, and stays out of the Average. A cell
shows ours with its 95% interval, the paper's value and the difference; the best of ours per
column is in bold. Below it, every row's paired difference to the CPT row and to the untrained
Chat row, with paired intervals over the same questions, and for multiple-choice tasks the
log-likelihood margin (a continuous score of the same answers). Intervals are bootstraps over
questions (and training seeds where a row has several) from lm-eval's per-sample logs
(cft.tables.uncertainty). A missing result is "—" with a footnote naming the file; no number is ever
invented, and an average over a row with a missing task is "—" too.

The paper's figures are the project's data file ``data/paper_tables.csv`` (from the paper's
talk slides and project page); ``table`` there is main or an ablation, ``variant`` the row.

    python -m cft.tables.table --domain biomed --model smollm2-135m-instruct --print
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import asdict
from pathlib import Path

from cft.core import paths
from cft.core.cli import stage_config, stage_parser
from cft.core.config import REPO_ROOT
from cft.core.errors import CftError
from cft.core.grid import (
    CellKey,
    Row,
    row_cells,
    suite,
    table_cells,
    table_records,
    table_rows,
)
from cft.core.io import atomic_path, check_output, file_sha256, read_json, write_json
from cft.core.logging_utils import setup_logging
from cft.core.methods import REFERENCE_METHODS
from cft.core.paths import TABLE_FILES, samples_path, table_dir
from cft.core.settings import evaluation_settings_hash, stage_provenance, stage_settings
from cft.evaluation import task_folders
from cft.tables.figures import bar_chart
from cft.tables.formats import interval_note, to_csv, to_latex, to_markdown
from cft.tables.model import Table
from cft.tables.uncertainty import (
    Bootstrap,
    bootstrap_of,
    estimate,
    paired_estimate,
    read_outcomes,
    score,
)

log = logging.getLogger(__name__)

# Our task names for the paper's column names (the medical ones are the same).
PAPER_TASKS = {
    "fiqa_sa": "finben_fiqasa",
    "causal20": "finben_causal20",
    "multifin": "finben_multifin",
}
REFERENCE_FILE = REPO_ROOT / "data" / "paper_tables.csv"


class TableError(CftError, ValueError):
    """An eval record that does not belong in the cell it was found for."""


def load_reference(path: Path = REFERENCE_FILE) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def reference_values(reference: list[dict], domain: str, row: Row, table_model: str) -> dict:
    """{task: percent} of the paper for one row: the main table first, then ablation tables."""
    model = row.model if row.variant == "external" else table_model
    found: dict[str, float] = {}
    ordered = sorted(reference, key=lambda r: r["table"] != "main")
    for entry in ordered:
        if (entry["domain"], entry["model"], entry["variant"]) != (domain, model, row.variant):
            continue
        task = PAPER_TASKS.get(entry["task"], entry["task"])
        if task != "average":
            found.setdefault(task, float(entry["value"]))
    return found


def reported_rows(config: dict, reference: list[dict]) -> list[tuple[str, str, str]]:
    """(domain, model, method) of every table row the paper reports a number for (its main
    table or an ablation): the rows `snakemake paper_cells` evaluates. The grid's other rows
    are the project's extensions."""
    found = [
        (domain, row.model, row.method)
        for domain in config["grid"]["domains"]
        for model in config["grid"]["models"]
        for row in table_rows(config, domain, model)
        if reference_values(reference, domain, row, model)
    ]
    return list(dict.fromkeys(found))


def read_record(path: Path) -> tuple[CellKey, dict]:
    """An eval record and the cell it names (its own identity fields, written by
    cft.evaluation.evaluate)."""
    record = read_json(path)
    if not isinstance(record, dict):
        raise TableError(
            f"{path}: not an eval record (a JSON {type(record).__name__}, not an object)"
        )
    try:
        return CellKey.of(record), record
    except KeyError as err:
        raise TableError(f"{path}: not an eval record naming its cell (no {err} field)") from None


# What every eval record carries besides its cell (cft.evaluation.evaluate writes them all); a
# record without one is refused, naming it, rather than trusted unchecked.
RECORD_FIELDS = ("metrics", "settings_hash", "samples_sha256")


def checked_outcomes(path: Path, record: dict, metric: str, settings_hash: str):
    """A record's score and per-sample outcomes; refuses a record made with other evaluation
    settings than the config's, and samples that do not give the record's score."""
    absent = [name for name in RECORD_FIELDS if name not in record]
    if absent:
        raise TableError(
            f"{path}: the eval record lacks {absent}, which cft.evaluation.evaluate writes into "
            f"every record (the checks of its settings and per-sample log need them); rerun the "
            f"evaluation"
        )
    if not isinstance(record["metrics"], dict) or metric not in record["metrics"]:
        raise TableError(f"{path}: the record's metrics have no {metric!r}; rerun the evaluation")
    if record["settings_hash"] != settings_hash:
        raise TableError(
            f"{path}: made with other evaluation settings than the config's (e.g. evaluation.limit"
            f" = {record.get('lm_eval_arguments', {}).get('limit')!r} there); rerun the "
            f"evaluation, or build the table with the config it was made with"
        )
    if file_sha256(samples_path(path)) != record["samples_sha256"]:
        raise TableError(
            f"{samples_path(path)}: not the per-sample log {path} was written with (its "
            f"SHA-256 differs from the record's samples_sha256); rerun the evaluation"
        )
    outcomes = read_outcomes(samples_path(path), metric)
    logged = record["metrics"][metric]
    if not math.isclose(float(score(outcomes)[0]), logged, abs_tol=1e-6):
        raise TableError(
            f"{samples_path(path)}: the per-sample log gives {metric} "
            f"{float(score(outcomes)[0]):.6f} but {path} records {logged:.6f}; "
            f"rerun the evaluation so the two are written together"
        )
    return logged, outcomes


def index_records(
    config: dict, domain: str, model: str, records: list[Path]
) -> tuple[dict[CellKey, tuple[Path, dict]], list[str]]:
    """The given records by the cell each names, and the given paths found missing (a record
    or its per-sample log). A record of a cell this table does not have, or two records of one
    cell, are refused: the table is built from exactly what it was given."""
    cells = set(table_cells(config, domain, model))
    found: dict[CellKey, tuple[Path, dict]] = {}
    missing: list[str] = []
    for path in map(Path, records):
        absent = [str(p) for p in (path, samples_path(path)) if not p.is_file()]
        if absent:
            missing += absent
            continue
        key, record = read_record(path)
        if key not in cells:
            raise TableError(
                f"{path}: the record is for {asdict(key)}, which is not a cell of the "
                f"{domain}/{model} table"
            )
        if key in found:
            raise TableError(f"{path} and {found[key][0]}: two records of the cell {asdict(key)}")
        found[key] = (path, record)
    return found, missing


def build_table(
    config: dict,
    domain: str,
    model: str,
    records: list[Path],
    reference: list[dict],
    *,
    bootstrap: Bootstrap | None = None,
) -> Table:
    """The table of (domain, model) from the given eval records (each with its per-sample log
    beside it), grouped by the cell each names; ``bootstrap`` defaults to evaluation.confidence
    of the config. Nothing else is read: a cell without a given record is missing."""
    confidence = config["evaluation"]["confidence"]
    boot = bootstrap or bootstrap_of(confidence)
    tasks = suite(config, domain)
    dirs = task_folders.task_dirs(config)
    metrics = {t: task_folders.reported_metric(task_folders.protocol_task(config, t), dirs)
               for t in tasks}  # fmt: skip
    table = Table(domain, model, tasks, table_rows(config, domain, model), metrics)
    table.bootstrap = {
        "iterations": boot.iters,
        "seed": boot.seed,
        "level": boot.level,
        "resample": boot.resample,
    }
    given, table.missing = index_records(config, domain, model, records)
    runs: dict[str, dict] = {}  # row label -> {task: [Outcomes per training run]}
    for row in table.rows:
        paper = reference_values(reference, domain, row, model)
        cells = {}
        for task in tasks:
            keys = [c for c in row_cells(config, domain, row.model, row.method) if c.task == task]
            lm_task = task_folders.protocol_task(config, task)
            values, found, logs = [], [], []
            for key in keys:
                if key not in given:
                    continue
                path, record = given[key]
                value, outcomes = checked_outcomes(
                    path,
                    record,
                    metrics[task],
                    evaluation_settings_hash(config, row.model, task),
                )
                values.append(value)
                found.append(outcomes)
                logs.append(samples_path(path))
            if found and len(found) == len(keys):  # a row's value needs all of its runs
                table.ours[(row.label, task)] = table.scale(task) * sum(values) / len(values)
                cells[task] = found
                table.secondary[(row.label, task)] = {
                    metric: estimate(
                        boot, row.label, {task: [read_outcomes(log, metric) for log in logs]}
                    ).scaled(100)
                    for metric in task_folders.secondary_metrics(lm_task, dirs)
                }
            if task in paper:
                table.paper[(row.label, task)] = paper[task]
        runs[row.label] = cells
        table.seeds[row.label] = max((len(c) for c in cells.values()), default=0)
    _add_estimates(table, runs, boot)
    return table


def _add_estimates(table: Table, runs: dict[str, dict], boot: Bootstrap) -> None:
    """Intervals of every cell and paired differences to the reference rows, in the table's
    units (margins in nats); the Average column's over the tasks it averages."""
    complete = {label for label, cells in runs.items() if len(cells) == len(table.tasks)}
    references = [
        row.label
        for method in REFERENCE_METHODS
        for row in table.rows
        if row.method == method and row.variant == method and row.label in complete
    ]
    for row in table.rows:
        cells = runs[row.label]
        averaged = {task: cells[task] for task in table.averaged if task in cells}
        for task, outcomes in cells.items():
            table.intervals[(row.label, task)] = estimate(boot, row.label, {task: outcomes}).scaled(
                table.scale(task)
            )
            if outcomes[0].margins is not None:
                table.margins[(row.label, task)] = estimate(
                    boot, row.label, {task: outcomes}, "margin"
                )
        if row.label in complete and averaged:
            table.intervals[(row.label, "average")] = estimate(boot, row.label, averaged).scaled(
                100
            )
        for ref in references:
            if ref == row.label:
                continue
            ref_cells = runs[ref]
            paired = table.paired.setdefault(ref, {})
            margins = table.paired_margins.setdefault(ref, {})
            for task in cells:
                one, other = {task: cells[task]}, {task: ref_cells[task]}
                paired[(row.label, task)] = paired_estimate(
                    boot, row.label, one, ref, other
                ).scaled(table.scale(task))
                if cells[task][0].margins is not None:
                    margins[(row.label, task)] = paired_estimate(
                        boot, row.label, one, ref, other, "margin"
                    )
            if row.label in complete and averaged:
                paired[(row.label, "average")] = paired_estimate(
                    boot, row.label, averaged, ref, {t: ref_cells[t] for t in averaged}
                ).scaled(100)


# ---- the stage ----------------------------------------------------------------------------------


def write_table(
    config: dict,
    domain: str,
    model: str,
    *,
    records: list[Path],
    out_dir: Path,
    reference_file: Path = REFERENCE_FILE,
) -> Table:
    """Write the table as Markdown, CSV, LaTeX and JSON plus its bar chart into ``out_dir``
    (names: config.TABLE_FILES); the folder is published as a unit, so its files always agree."""
    check_output(out_dir, directory=True)
    table = build_table(config, domain, model, records, load_reference(reference_file))
    with atomic_path(out_dir) as staged:
        staged.mkdir()
        out = {kind: staged / name for kind, name in TABLE_FILES.items()}
        for kind, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
            out[kind].write_text(render(table))
        write_json(
            out["json"],
            {
                **table.as_json(),
                "interval_note": interval_note(table),
                "provenance": stage_provenance(
                    "table", stage_settings(config, "table", domain=domain)
                ),
            },
        )
        bar_chart(table, out["png"], out["svg"])
    if table.missing:
        log.warning("%s/%s: %d result(s) missing", domain, model, len(table.missing))
    return table


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--eval-root", default=paths.EVAL_ROOT)
    parser.add_argument(
        "--out-root", default=paths.TABLES_ROOT, help="the table goes to OUT_ROOT/DOMAIN/MODEL/"
    )
    parser.add_argument("--print", action="store_true", help="print the Markdown table")
    args = parser.parse_args(argv)
    setup_logging()
    config = stage_config(args)
    table = write_table(
        config,
        args.domain,
        args.model,
        records=[Path(p) for p in table_records(config, args.domain, args.model, args.eval_root)],
        out_dir=Path(table_dir(args.domain, args.model, args.out_root)),
    )
    if args.print:
        print(to_markdown(table))


if __name__ == "__main__":
    main()
