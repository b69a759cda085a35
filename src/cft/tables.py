"""Result tables in the paper's layout, with the paper's numbers beside ours, and their figures.

One table per (domain, model): rows are the methods (Chat, Chat (CPT), Chat (CFT), Chat (-CFT),
Chat (TextAdaptCFT)) and the domain's external baselines; columns are the domain's tasks in
suite order, plus Average, the unweighted mean of the task columns (as in the paper). Scores are
percentages: accuracy, or weighted F1 for the FinBen tasks. A cell shows ours with its 95%
interval, the paper's value and the difference; the best of ours per column is in bold. Below
it, every row's paired difference to the CPT row and to the untrained Chat row, with paired
intervals over the same questions, and for multiple-choice tasks the log-likelihood margin (a
continuous score of the same answers). Intervals are bootstraps over questions (and training
seeds where a row has several) from lm-eval's per-sample logs (cft.uncertainty). A missing
result is "—" with a footnote naming the file; no number is ever invented, and an average over
a row with a missing task is "—" too.

The paper's figures are the project's data file ``data/paper_tables.csv`` (from the paper's
talk slides and project page); ``table`` there is main or an ablation, ``variant`` the row.

    python -m cft.tables --domain biomed --model smollm2-135m-instruct --print
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cft import paths
from cft.cli import stage_config, stage_parser
from cft.config import REPO_ROOT, training_seeds
from cft.io import atomic_path, check_output, file_sha256, read_json, write_json
from cft.logging_utils import setup_logging
from cft.paths import TABLE_FILES, UNTRAINED, eval_json, samples_path, table_dir
from cft.plotting import pyplot, save_figure
from cft.provenance import provenance
from cft.settings import evaluation_settings_hash
from cft.uncertainty import (
    Bootstrap,
    Estimate,
    bootstrap_of,
    estimate,
    paired_estimate,
    read_outcomes,
    score,
)

log = logging.getLogger(__name__)

METHOD_LABELS = {
    "chat": "Chat",
    "cpt": "Chat (CPT)",
    "cft": "Chat (CFT)",
    "negcft": "Chat (-CFT)",
    "autocft": "Chat (TextAdaptCFT)",
}
# Our task names for the paper's column names (the medical ones are the same).
PAPER_TASKS = {
    "fiqa_sa": "finben_fiqasa",
    "causal20": "finben_causal20",
    "multifin": "finben_multifin",
}
REFERENCE_FILE = REPO_ROOT / "data" / "paper_tables.csv"
MISSING = "—"


def primary_metric(task: str) -> str:
    """The metric a table reports for a task: FinBen's weighted F1, else accuracy."""
    return "weighted_f1" if "finben_" in task else "acc"


def task_label(task: str) -> str:
    return task.removeprefix("mmlu_").removeprefix("demo_").replace("_", " ")


@dataclass
class Row:
    label: str
    model: str
    method: str  # "chat" for baselines (evaluated as they are)
    variant: str  # the reference file's row name: a method, or "external"


@dataclass
class Table:
    domain: str
    model: str
    tasks: list[str]
    rows: list[Row]
    ours: dict = field(default_factory=dict)  # (row label, task) -> percent
    paper: dict = field(default_factory=dict)  # (row label, task) -> percent
    missing: list[str] = field(default_factory=list)  # result files not found
    # (row label, column) -> Estimate in percent, the average column included
    intervals: dict = field(default_factory=dict)
    # reference row label -> {(row label, column) -> Estimate}: row minus reference, paired
    paired: dict = field(default_factory=dict)
    # (row label, task) -> Estimate of the mean log-likelihood margin (multiple choice)
    margins: dict = field(default_factory=dict)
    paired_margins: dict = field(default_factory=dict)
    seeds: dict = field(default_factory=dict)  # row label -> number of training runs
    bootstrap: dict = field(default_factory=dict)  # iterations, seed, level

    def average(self, values: dict, label: str) -> float | None:
        cells = [values.get((label, task)) for task in self.tasks]
        if not cells or any(v is None for v in cells):
            return None
        return sum(cells) / len(cells)

    def columns(self) -> list[str]:
        return [*self.tasks, "average"]

    def value(self, values: dict, label: str, column: str) -> float | None:
        return self.average(values, label) if column == "average" else values.get((label, column))

    @property
    def has_paper(self) -> bool:
        return bool(self.paper)

    def best(self, column: str) -> float | None:
        scores = [self.value(self.ours, r.label, column) for r in self.rows]
        scores = [s for s in scores if s is not None]
        return max(scores) if scores else None


def table_rows(config: dict, domain: str, model: str) -> list[Row]:
    rows = [
        Row(METHOD_LABELS[m], model, m, m) for m in config["grid"]["methods"] if m in METHOD_LABELS
    ]
    for baseline in config["baselines"].values():
        if baseline["domain"] == domain:
            rows.append(Row(baseline["label"], baseline["model"], "chat", "external"))
    return rows


# Rows every other row is compared with, paired over the same questions: CPT (the paper's
# comparison for CFT) and the untrained Chat model (what training added).
REFERENCE_METHODS = ("cpt", "chat")


class TableError(ValueError):
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


def _read_run(path: Path, expected: dict, metric: str, settings_hash: str):
    """An eval record and its per-sample outcomes; refuses a record made for another cell or
    with other evaluation settings than the config's, and samples that do not give the
    record's score."""
    record = read_json(path)
    found = {key: record.get(key) for key in expected}
    if found != expected:
        raise TableError(f"{path}: the record is for {found}, but this cell is {expected}")
    recorded = record.get("settings_hash")
    if recorded is not None and recorded != settings_hash:
        raise TableError(
            f"{path}: made with other evaluation settings than the config's (e.g. "
            f"evaluation.limit = {record.get('settings', {}).get('limit')!r} there); rerun the "
            f"evaluation, or build the table with the config it was made with"
        )
    logged_sha = record.get("samples_sha256")
    if logged_sha is not None and file_sha256(samples_path(path)) != logged_sha:
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


def build_table(
    config: dict,
    domain: str,
    model: str,
    eval_root: Path,
    reference: list[dict],
    *,
    bootstrap: Bootstrap | None = None,
) -> Table:
    """The table of (domain, model) from the eval records under ``eval_root`` and their
    per-sample logs; ``bootstrap`` defaults to evaluation.confidence of the config."""
    confidence = config["evaluation"]["confidence"]
    boot = bootstrap or bootstrap_of(confidence)
    tasks = list(config["evaluation"]["suites"].get(domain, []))
    table = Table(domain, model, tasks, table_rows(config, domain, model))
    table.bootstrap = {
        "iterations": boot.iters,
        "seed": boot.seed,
        "level": boot.level,
        "resample": boot.resample,
    }
    runs: dict[str, dict] = {}  # row label -> {task: [Outcomes per training run]}
    for row in table.rows:
        paper = reference_values(reference, domain, row, model)
        seeds = [None] if row.method == UNTRAINED else training_seeds(config)
        cells = {}
        for task in tasks:
            values, found = [], []
            for seed in seeds:
                path = Path(eval_json(domain, row.model, row.method, seed, task, str(eval_root)))
                expected = {
                    "domain": domain,
                    "model": row.model,
                    "method": row.method,
                    "training_seed": seed,
                    "task": task,
                }
                missing = [str(p) for p in (path, samples_path(path)) if not p.is_file()]
                table.missing += missing
                if not missing:
                    value, outcomes = _read_run(
                        path,
                        expected,
                        primary_metric(task),
                        evaluation_settings_hash(config, row.model, task),
                    )
                    values.append(value)
                    found.append(outcomes)
            if found and len(found) == len(seeds):  # a row's value needs all of its runs
                table.ours[(row.label, task)] = 100 * sum(values) / len(values)
                cells[task] = found
            if task in paper:
                table.paper[(row.label, task)] = paper[task]
        runs[row.label] = cells
        table.seeds[row.label] = max((len(c) for c in cells.values()), default=0)
    _add_estimates(table, runs, boot)
    return table


def _add_estimates(table: Table, runs: dict[str, dict], boot: Bootstrap) -> None:
    """Intervals of every cell and paired differences to the reference rows, in percent
    (margins in nats)."""
    complete = {label for label, cells in runs.items() if len(cells) == len(table.tasks)}
    references = [
        row.label
        for method in REFERENCE_METHODS
        for row in table.rows
        if row.method == method and row.variant == method and row.label in complete
    ]
    for row in table.rows:
        cells = runs[row.label]
        for task, outcomes in cells.items():
            table.intervals[(row.label, task)] = estimate(boot, row.label, {task: outcomes}).scaled(
                100
            )
            if outcomes[0].margins is not None:
                table.margins[(row.label, task)] = estimate(
                    boot, row.label, {task: outcomes}, "margin"
                )
        if row.label in complete and table.tasks:
            table.intervals[(row.label, "average")] = estimate(boot, row.label, cells).scaled(100)
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
                ).scaled(100)
                if cells[task][0].margins is not None:
                    margins[(row.label, task)] = paired_estimate(
                        boot, row.label, one, ref, other, "margin"
                    )
            if row.label in complete:
                paired[(row.label, "average")] = paired_estimate(
                    boot, row.label, cells, ref, ref_cells
                ).scaled(100)


# ---- rendering ----------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def _diff(ours: float | None, paper: float | None) -> str:
    return MISSING if ours is None or paper is None else f"{ours - paper:+.2f}"


def _interval(estimate: Estimate | None, digits: int = 1) -> str:
    return "" if estimate is None else f"[{estimate.low:.{digits}f}, {estimate.high:.{digits}f}]"


def _signed(estimate: Estimate | None, digits: int = 1) -> str:
    if estimate is None:
        return MISSING
    return f"{estimate.value:+.{digits}f} {_interval(estimate, digits)}"


def cell_parts(table: Table, label: str, column: str) -> tuple[str, str, str, bool]:
    ours = table.value(table.ours, label, column)
    paper = table.value(table.paper, label, column)
    best = table.best(column)
    is_best = ours is not None and best is not None and math.isclose(ours, best)
    return _fmt(ours), _fmt(paper), _diff(ours, paper), is_best


def interval_note(table: Table) -> str:
    boot = table.bootstrap
    unit = (
        "facts (all wordings of a fact drawn together)"
        if boot["resample"] == "facts"
        else "questions"
    )
    seeds = sorted({n for n in table.seeds.values() if n})
    over_seeds = (
        f" and over each row's {'/'.join(map(str, seeds))} training seeds"
        if seeds and seeds != [1]
        else ""
    )
    return (
        f"[brackets]: {boot['level']:.0%} percentile bootstrap interval over the {unit}"
        f"{over_seeds} ({boot['iterations']} resamples, seed {boot['seed']}) of lm-eval's "
        f"per-sample logs; paired differences resample the same questions for both rows."
    )


def footnotes(table: Table) -> list[str]:
    notes = []
    if table.missing:
        notes.append("— : no result yet; missing files: " + ", ".join(table.missing))
    return notes


def reference_labels(table: Table) -> list[str]:
    return list(table.paired)


def _markdown_grid(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def to_markdown(table: Table) -> str:
    metric = "; ".join(f"{task_label(t)}: {primary_metric(t)}" for t in table.tasks)
    lines = [f"### {table.domain} / {table.model}", ""]
    header = ["method"] + [task_label(c) for c in table.columns()]
    body = []
    for row in table.rows:
        cells = [row.label]
        for column in table.columns():
            ours, paper, diff, best = cell_parts(table, row.label, column)
            shown = f"**{ours}**" if best else ours
            interval = _interval(table.intervals.get((row.label, column)))
            shown = f"{shown} {interval}" if interval else shown
            if table.has_paper:
                shown = f"{shown} / {paper} ({diff})"
            cells.append(shown)
        body.append(cells)
    lines += _markdown_grid(header, body)
    lines.append("")
    lines.append(
        "Scores in percent (" + metric + "); Average is the unweighted mean of the task columns."
    )
    if table.has_paper:
        lines.append("Cells: ours [interval] / paper (ours − paper); bold: our best per column.")
    else:
        lines.append("Bold: best per column. The paper has no numbers for this table.")
    for ref in reference_labels(table):
        lines += ["", f"**Paired difference to {ref}** (row − {ref}, percentage points)", ""]
        body = [
            [row.label] + [_signed(table.paired[ref].get((row.label, c))) for c in table.columns()]
            for row in table.rows
            if row.label != ref
        ]
        lines += _markdown_grid(header, body)
    margin_tasks = [t for t in table.tasks if any(k[1] == t for k in table.margins)]
    if margin_tasks:
        lines += [
            "",
            "**Log-likelihood margin** (nats: the correct option's log-likelihood minus the best "
            "distractor's, mean over questions; > 0 means answered right with room to spare)",
            "",
        ]
        refs = reference_labels(table)
        margin_header = ["method"] + [
            f"{task_label(t)}{suffix}"
            for t in margin_tasks
            for suffix in ["", *(f" − {r}" for r in refs)]
        ]
        body = []
        for row in table.rows:
            cells = [row.label]
            for task in margin_tasks:
                margin = table.margins.get((row.label, task))
                cells.append(
                    MISSING if margin is None else f"{margin.value:.2f} {_interval(margin, 2)}"
                )
                for ref in refs:
                    paired = table.paired_margins.get(ref, {}).get((row.label, task))
                    cells.append("" if ref == row.label else _signed(paired, 2))
            body.append(cells)
        lines += _markdown_grid(margin_header, body)
    lines += ["", interval_note(table)]
    lines += [f"[{i + 1}] {note}" for i, note in enumerate(footnotes(table))]
    return "\n".join(lines) + "\n"


def _number(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def to_csv(table: Table) -> str:
    """Long format: one line per (row, column) with the interval, the paper's value and the
    paired difference to each reference row; margins as metric ``loglik_margin``."""
    refs = reference_labels(table)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    paired_columns = [
        f"{name}_{reference_key(ref)}" for ref in refs for name in ("diff", "diff_low", "diff_high")
    ]
    header = ["domain", "model", "row", "task", "metric", "ours", "ci_low", "ci_high", "seeds"]
    writer.writerow([*header, "paper", "difference", *paired_columns])

    def paired_cells(source: dict, label: str, column: str) -> list[str]:
        cells = []
        for ref in refs:
            found = source.get(ref, {}).get((label, column))
            cells += [_number(getattr(found, key, None)) for key in ("value", "low", "high")]
        return cells

    for row in table.rows:
        for column in table.columns():
            ours = table.value(table.ours, row.label, column)
            paper = table.value(table.paper, row.label, column)
            interval = table.intervals.get((row.label, column))
            metric = "mean_of_tasks" if column == "average" else primary_metric(column)
            writer.writerow(
                [
                    *(table.domain, table.model, row.label, column, metric, _number(ours)),
                    _number(getattr(interval, "low", None)),
                    _number(getattr(interval, "high", None)),
                    table.seeds.get(row.label, 0),
                    "" if paper is None else f"{paper:.2f}",
                    "" if ours is None or paper is None else f"{ours - paper:.4f}",
                    *paired_cells(table.paired, row.label, column),
                ]
            )
        for task in table.tasks:
            margin = table.margins.get((row.label, task))
            if margin is None:
                continue
            writer.writerow(
                [
                    *(table.domain, table.model, row.label, task, "loglik_margin"),
                    *(_number(margin.value), _number(margin.low), _number(margin.high)),
                    *(table.seeds.get(row.label, 0), "", ""),
                    *paired_cells(table.paired_margins, row.label, task),
                ]
            )
    return out.getvalue()


def reference_key(label: str) -> str:
    """'Chat (CPT)' -> 'vs_chat_cpt': a CSV/JSON-safe name of a reference row."""
    return "vs_" + "_".join("".join(c if c.isalnum() else " " for c in label).lower().split())


def _latex_escape(text: str) -> str:
    for char, escaped in (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text


def _latex_interval(estimate: Estimate | None) -> str:
    return (
        "" if estimate is None else rf"\,{{\scriptsize[{estimate.low:.1f}, {estimate.high:.1f}]}}"
    )


def to_latex(table: Table) -> str:
    """A booktabs table (ours with its interval; with paper numbers, each task has an `ours'
    and a `paper' column), then the paired differences to the CPT row."""
    per_column = 2 if table.has_paper else 1
    spec = "l" + "r" * per_column * len(table.columns())
    lines = [r"\begin{tabular}{" + spec + "}", r"\toprule"]
    heads = [
        (
            rf"\multicolumn{{{per_column}}}{{c}}{{{_latex_escape(task_label(c))}}}"
            if per_column > 1
            else _latex_escape(task_label(c))
        )
        for c in table.columns()
    ]
    lines.append("Method & " + " & ".join(heads) + r" \\")
    if table.has_paper:
        lines.append(" & " + " & ".join(["ours & paper"] * len(table.columns())) + r" \\")
    lines.append(r"\midrule")
    for row in table.rows:
        cells = [_latex_escape(row.label)]
        for column in table.columns():
            ours, paper, _, best = cell_parts(table, row.label, column)
            ours = ours.replace(MISSING, "---")
            ours = rf"\textbf{{{ours}}}" if best else ours
            cells.append(ours + _latex_interval(table.intervals.get((row.label, column))))
            if table.has_paper:
                cells.append(paper.replace(MISSING, "---"))
        lines.append(" & ".join(cells) + r" \\")
    for ref in reference_labels(table)[:1]:
        lines.append(r"\midrule")
        lines.append(
            rf"\multicolumn{{{1 + per_column * len(table.columns())}}}{{l}}"
            rf"{{\emph{{paired difference to {_latex_escape(ref)}}}}} \\"
        )
        for row in table.rows:
            if row.label == ref:
                continue
            cells = [_latex_escape(row.label)]
            for column in table.columns():
                found = table.paired[ref].get((row.label, column))
                shown = "---" if found is None else f"{found.value:+.1f}" + _latex_interval(found)
                cells += [shown] + ([""] if table.has_paper else [])
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines.append("% " + interval_note(table))
    if table.missing:
        lines.append("% missing results: " + ", ".join(table.missing))
    return "\n".join(lines) + "\n"


# ---- figures ------------------------------------------------------------------------------------


def bar_chart(table: Table, png: Path, svg: Path) -> None:
    """Grouped bars per column: ours (solid, hatched per row) and the paper's (outlined)."""
    plt = pyplot()

    hatches = ["", "//", "\\\\", "xx", "..", "--", "++", "oo"]
    greys = ["0.15", "0.35", "0.55", "0.75", "0.9", "0.45", "0.65", "0.25"]
    columns = table.columns()
    n_rows = len(table.rows)
    width = 0.8 / max(n_rows, 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(columns) + 2), 4.2))
    for i, row in enumerate(table.rows):
        xs = [c + (i - (n_rows - 1) / 2) * width for c in range(len(columns))]
        ours = [table.value(table.ours, row.label, c) for c in columns]
        bars = ax.bar(
            xs,
            [v if v is not None else 0 for v in ours],
            width,
            label=row.label,
            color=greys[i % len(greys)],
            hatch=hatches[i % len(hatches)],
            edgecolor="black",
            linewidth=0.6,
        )
        intervals = [table.intervals.get((row.label, c)) for c in columns]
        has = [
            (x, v, e) for x, v, e in zip(xs, ours, intervals, strict=True) if e and v is not None
        ]
        if has:
            ax.errorbar(
                [x for x, _, _ in has],
                [v for _, v, _ in has],
                yerr=[[v - e.low for _, v, e in has], [e.high - v for _, v, e in has]],
                fmt="none",
                ecolor="black",
                elinewidth=0.8,
                capsize=2,
            )
        ax.bar_label(
            bars,
            labels=[_fmt(v) if v is not None else MISSING for v in ours],
            fontsize=6,
            padding=1,
            rotation=90,
        )
        paper = [table.value(table.paper, row.label, c) for c in columns]
        for x, value in zip(xs, paper, strict=True):
            if value is not None:
                ax.plot([x - width / 2, x + width / 2], [value, value], color="black", lw=2)
    if table.has_paper:
        ax.plot([], [], color="black", lw=2, label="paper's value")
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([task_label(c) for c in columns], rotation=20, ha="right")
    ax.set_ylabel("score (%), 95% interval")
    versus = ": ours (bars) vs paper (lines)" if table.has_paper else " (the paper has no values)"
    ax.set_title(f"{table.domain} / {table.model}{versus}")
    ax.legend(fontsize=8, ncols=2, frameon=False)
    ax.set_ylim(0, 100)
    ax.grid(axis="y", color="0.85", linewidth=0.5)
    ax.set_axisbelow(True)
    fig.tight_layout()
    save_figure(fig, png, svg)


def loss_figure(curves: dict[str, Path], title: str, png: Path, svg: Path) -> None:
    """Training loss per step, one line style per method (readable in black and white)."""
    plt = pyplot()
    import pandas as pd

    styles = ["-", "--", "-.", ":", (0, (5, 1, 1, 1))]
    markers = ["o", "s", "^", "D", "v"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (method, path) in enumerate(curves.items()):
        if not Path(path).is_file():
            continue
        curve = pd.read_csv(path)
        ax.plot(
            curve["step"],
            curve["loss"],
            linestyle=styles[i % len(styles)],
            marker=markers[i % len(markers)],
            markersize=3,
            color="black",
            label=METHOD_LABELS.get(method, method),
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (text tokens)")
    ax.set_title(title)
    ax.legend(frameon=False)
    ax.grid(color="0.85", linewidth=0.5)
    fig.tight_layout()
    save_figure(fig, png, svg)


def knowledge_figure(curve_files: list[Path], title: str, png: Path, svg: Path) -> None:
    """Knowledge-acquisition curves (cft.curves): accuracy, with its interval as a band,
    against training tokens, one line per method."""
    plt = pyplot()
    styles = ["-", "--", "-.", ":"]
    markers = ["o", "s", "^", "D"]
    greys = ["0.1", "0.4", "0.6", "0.3"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, path in enumerate(curve_files):
        record = read_json(Path(path))
        points = record["points"]
        tokens = [p["tokens"] for p in points]
        ax.fill_between(
            tokens,
            [p["low"] for p in points],
            [p["high"] for p in points],
            color=greys[i % 4],
            alpha=0.15,
            linewidth=0,
        )
        ax.plot(
            tokens,
            [p["accuracy"] for p in points],
            linestyle=styles[i % 4],
            marker=markers[i % 4],
            markersize=3,
            color=greys[i % 4],
            label=METHOD_LABELS.get(record["method"], record["method"]),
        )
    ax.axhline(25, color="0.7", linewidth=0.8, linestyle=":", label="chance (4 options)")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("held-out accuracy (%), 95% band")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    ax.grid(color="0.85", linewidth=0.5)
    fig.tight_layout()
    save_figure(fig, png, svg)


# ---- the stage ----------------------------------------------------------------------------------


def _estimates_json(cells: dict) -> dict:
    """{(row, column): Estimate} as {"row|column": {"value", "low", "high"}}."""
    return {f"{k[0]}|{k[1]}": asdict(v) for k, v in cells.items()}


def write_table(
    config: dict,
    domain: str,
    model: str,
    *,
    eval_root: Path,
    out_dir: Path,
    reference_file: Path = REFERENCE_FILE,
) -> Table:
    """Write the table as Markdown, CSV, LaTeX and JSON plus its bar chart into ``out_dir``
    (names: config.TABLE_FILES); the folder is published as a unit, so its files always agree."""
    check_output(out_dir, directory=True)
    table = build_table(config, domain, model, eval_root, load_reference(reference_file))
    with atomic_path(out_dir) as staged:
        staged.mkdir()
        out = {kind: staged / name for kind, name in TABLE_FILES.items()}
        for kind, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
            out[kind].write_text(render(table))
        write_json(
            out["json"],
            {
                "domain": domain,
                "model": model,
                "tasks": table.tasks,
                "rows": [r.label for r in table.rows],
                "ours": {f"{k[0]}|{k[1]}": v for k, v in table.ours.items()},
                "paper": {f"{k[0]}|{k[1]}": v for k, v in table.paper.items()},
                "intervals": _estimates_json(table.intervals),
                "paired": {ref: _estimates_json(cells) for ref, cells in table.paired.items()},
                "margins": _estimates_json(table.margins),
                "paired_margins": {
                    ref: _estimates_json(cells) for ref, cells in table.paired_margins.items()
                },
                "seeds": table.seeds,
                "bootstrap": table.bootstrap,
                "interval_note": interval_note(table),
                "missing": table.missing,
                "provenance": provenance({"evaluation": config["evaluation"]}),
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
        eval_root=Path(args.eval_root),
        out_dir=Path(table_dir(args.domain, args.model, args.out_root)),
    )
    if args.print:
        print(to_markdown(table))


if __name__ == "__main__":
    main()
