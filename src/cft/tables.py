"""Result tables in the paper's layout, with the paper's numbers beside ours, and their figures.

One table per (domain, model): rows are the methods (Chat, Chat (CPT), Chat (CFT), Chat (-CFT),
Chat (TextAdaptCFT)) and the domain's external baselines; columns are the domain's tasks in
suite order, plus Average, the unweighted mean of the task columns (as in the paper). Scores are
percentages: accuracy, or weighted F1 for the FinBen tasks. A cell shows ours, the paper's value
and the difference; the best of ours per column is in bold. A missing result is "—" with a
footnote naming the file; no number is ever invented, and an average over a row with a missing
task is "—" too.

The paper's figures are the project's data file ``data/paper_tables.csv`` (from the paper's
talk slides and project page); ``table`` there is main or an ablation, ``variant`` the row.

    python -m cft.tables --domain biomed --model smollm2-135m-instruct --print
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from cft.cli import stage_parser
from cft.config import REPO_ROOT, load_config
from cft.io import atomic_path, write_json
from cft.logging_utils import setup_logging
from cft.plotting import pyplot, save_figure
from cft.provenance import provenance

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


def eval_path(root: Path, domain: str, model: str, method: str, task: str) -> Path:
    return Path(root) / domain / model / method / f"{task}.json"


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


def build_table(
    config: dict, domain: str, model: str, eval_root: Path, reference: list[dict]
) -> Table:
    tasks = list(config["evaluation"]["suites"].get(domain, []))
    table = Table(domain, model, tasks, table_rows(config, domain, model))
    for row in table.rows:
        paper = reference_values(reference, domain, row, model)
        for task in tasks:
            path = eval_path(eval_root, domain, row.model, row.method, task)
            if path.is_file():
                metrics = json.loads(path.read_text())["metrics"]
                table.ours[(row.label, task)] = 100 * metrics[primary_metric(task)]
            else:
                table.missing.append(str(path))
            if task in paper:
                table.paper[(row.label, task)] = paper[task]
    return table


# ---- rendering ----------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def _diff(ours: float | None, paper: float | None) -> str:
    return MISSING if ours is None or paper is None else f"{ours - paper:+.2f}"


def cell_parts(table: Table, label: str, column: str) -> tuple[str, str, str, bool]:
    ours = table.value(table.ours, label, column)
    paper = table.value(table.paper, label, column)
    best = table.best(column)
    is_best = ours is not None and best is not None and math.isclose(ours, best)
    return _fmt(ours), _fmt(paper), _diff(ours, paper), is_best


def footnotes(table: Table) -> list[str]:
    notes = []
    if table.missing:
        notes.append("— : no result yet; missing files: " + ", ".join(table.missing))
    return notes


def to_markdown(table: Table) -> str:
    metric = "; ".join(f"{task_label(t)}: {primary_metric(t)}" for t in table.tasks)
    lines = [f"### {table.domain} / {table.model}", ""]
    header = ["method"] + [task_label(c) for c in table.columns()]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in table.rows:
        cells = [row.label]
        for column in table.columns():
            ours, paper, diff, best = cell_parts(table, row.label, column)
            shown = f"**{ours}**" if best else ours
            if table.has_paper:
                shown = f"{shown} / {paper} ({diff})"
            cells.append(shown)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Scores in percent (" + metric + "); Average is the unweighted mean of the task columns."
    )
    if table.has_paper:
        lines.append("Cells: ours / paper (ours − paper); bold: our best per column.")
    else:
        lines.append("Bold: best per column. The paper has no numbers for this table.")
    lines += [f"[{i + 1}] {note}" for i, note in enumerate(footnotes(table))]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["domain", "model", "row", "task", "metric", "ours", "paper", "difference"])
    for row in table.rows:
        for column in table.columns():
            ours = table.value(table.ours, row.label, column)
            paper = table.value(table.paper, row.label, column)
            metric = "mean_of_tasks" if column == "average" else primary_metric(column)
            writer.writerow(
                [
                    table.domain,
                    table.model,
                    row.label,
                    column,
                    metric,
                    "" if ours is None else f"{ours:.4f}",
                    "" if paper is None else f"{paper:.2f}",
                    "" if ours is None or paper is None else f"{ours - paper:.4f}",
                ]
            )
    return out.getvalue()


def _latex_escape(text: str) -> str:
    for char, escaped in (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text


def to_latex(table: Table) -> str:
    """A booktabs table; with paper numbers, each task has an `ours' and a `paper' column."""
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
            cells.append(rf"\textbf{{{ours}}}" if best else ours)
            if table.has_paper:
                cells.append(paper.replace(MISSING, "---"))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
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
    ax.set_ylabel("score (%)")
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


# ---- the stage ----------------------------------------------------------------------------------


def write_table(
    config: dict,
    domain: str,
    model: str,
    *,
    eval_root: Path,
    out: dict[str, Path],
    reference_file: Path = REFERENCE_FILE,
) -> Table:
    """Write the table as Markdown, CSV, LaTeX and JSON plus its bar chart (``out`` maps
    md/csv/tex/json/png/svg to paths)."""
    table = build_table(config, domain, model, eval_root, load_reference(reference_file))
    for kind, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
        with atomic_path(out[kind]) as tmp:
            tmp.write_text(render(table))
    write_json(
        out["json"],
        {
            "domain": domain,
            "model": model,
            "tasks": table.tasks,
            "rows": [r.label for r in table.rows],
            "ours": {f"{k[0]}|{k[1]}": v for k, v in table.ours.items()},
            "paper": {f"{k[0]}|{k[1]}": v for k, v in table.paper.items()},
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
    parser.add_argument("--eval-root", default="results/eval")
    parser.add_argument("--out-dir", default="results/tables")
    parser.add_argument("--print", action="store_true", help="print the Markdown table")
    args = parser.parse_args(argv)
    setup_logging()
    config = load_config(args.config)
    base = f"{args.out_dir}/{args.domain}/{args.model}"
    out = {kind: Path(f"{base}.{kind}") for kind in ("md", "csv", "tex", "json")}
    figures = f"results/figures/{args.domain}/{args.model}"
    out |= {"png": Path(f"{figures}_bars.png"), "svg": Path(f"{figures}_bars.svg")}
    table = write_table(config, args.domain, args.model, eval_root=Path(args.eval_root), out=out)
    if args.print:
        print(to_markdown(table))


if __name__ == "__main__":
    main()
