"""A built table (cft.tables.model.Table) as text: Markdown (the README's and the report's), CSV
with every interval, and LaTeX in the paper's layout."""

from __future__ import annotations

import csv
import io
import math

from cft.core.grid import MISSING, task_label
from cft.tables.model import Table
from cft.tables.uncertainty import Estimate


def _fmt(value: float | None, digits: int = 2) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


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
    return _fmt(ours, table.digits(column)), _fmt(paper), _diff(ours, paper), is_best


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
    if unit == "questions" and any(table.lower_is_better(t) for t in table.tasks):
        unit = "questions (documents for the held-out text)"
    return (
        f"[brackets]: {boot['level']:.0%} percentile bootstrap interval over the {unit}"
        f"{over_seeds} ({boot['iterations']} resamples, seed {boot['seed']}) of lm-eval's "
        f"per-sample logs; paired differences resample the same questions for both rows."
    )


EXTENSION_MARK = "†"


def footnotes(table: Table) -> list[str]:
    notes = []
    if table.extensions:
        notes.append(
            f"{EXTENSION_MARK} : not in the paper for this model and domain; the project's "
            "extension of its grid (docs/fidelity.md)"
        )
    if table.missing:
        notes.append("— : no result yet; missing files: " + ", ".join(table.missing))
    return notes


def reference_labels(table: Table) -> list[str]:
    return list(table.paired)


def _markdown_grid(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def to_markdown(table: Table) -> str:
    metric = "; ".join(f"{task_label(t)}: {table.metrics[t]}" for t in table.averaged)
    lines = [f"### {table.domain} / {table.model}", ""]
    header = ["method"] + [task_label(c) for c in table.columns()]
    body = []
    for row in table.rows:
        cells = [row.label + (f" {EXTENSION_MARK}" if row.label in table.extensions else "")]
        for column in table.columns():
            ours, paper, diff, best = cell_parts(table, row.label, column)
            shown = f"**{ours}**" if best else ours
            interval = _interval(
                table.intervals.get((row.label, column)), table.interval_digits(column)
            )
            shown = f"{shown} {interval}" if interval else shown
            if table.has_paper:
                shown = f"{shown} / {paper} ({diff})"
            cells.append(shown)
        body.append(cells)
    lines += _markdown_grid(header, body)
    lines.append("")
    if table.averaged:
        lines.append(
            f"Scores in percent ({metric}); Average is the unweighted mean of the task columns"
            + ("." if table.averaged == table.tasks else " in percent.")
        )
    ratio = [task_label(t) for t in table.tasks if table.lower_is_better(t)]
    if ratio:
        lines.append(
            f"{', '.join(ratio)}: bits per byte of the domain's held-out documents, lower is "
            "better (loss on document text only; not one of the paper's metrics, not in Average)."
        )
    if table.has_paper:
        lines.append("Cells: ours [interval] / paper (ours − paper); bold: our best per column.")
    else:
        lines.append("Bold: best per column. The paper has no numbers for this table.")
    for ref in reference_labels(table):
        units = "percentage points" + ("; bits per byte" if ratio else "")
        lines += ["", f"**Paired difference to {ref}** (row − {ref}, {units})", ""]
        body = [
            [row.label]
            + [
                _signed(table.paired[ref].get((row.label, c)), table.interval_digits(c))
                for c in table.columns()
            ]
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
            metric = "mean_of_tasks" if column == "average" else table.metrics[column]
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


def _latex_interval(estimate: Estimate | None, digits: int = 1) -> str:
    if estimate is None:
        return ""
    return rf"\,{{\scriptsize[{estimate.low:.{digits}f}, {estimate.high:.{digits}f}]}}"


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
            cells.append(
                ours
                + _latex_interval(
                    table.intervals.get((row.label, column)), table.interval_digits(column)
                )
            )
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
                digits = table.interval_digits(column)
                shown = (
                    "---"
                    if found is None
                    else f"{found.value:+.{digits}f}" + _latex_interval(found, digits)
                )
                cells += [shown] + ([""] if table.has_paper else [])
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines.append("% " + interval_note(table))
    if table.missing:
        lines.append("% missing results: " + ", ".join(table.missing))
    return "\n".join(lines) + "\n"


# ---- figures ------------------------------------------------------------------------------------
