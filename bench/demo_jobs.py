"""Where a workflow run's time went: job-seconds per stage from Snakemake's `benchmark:` files.

Every rule with a `benchmark:` directive writes `benchmarks/<rule>/.../<job>.tsv` (wall
seconds `s` and `cpu_time` of the job's processes). This sums them per stage; given a second
tree (`--before`), it prints both and their ratio, for a before/after comparison of the same
workflow on the same machine.

    .venv/bin/python bench/demo_jobs.py benchmarks
    .venv/bin/python bench/demo_jobs.py benchmarks --before /path/to/older/benchmarks
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path


def job_seconds(root: Path) -> dict[str, dict[str, float]]:
    """Per stage: jobs, summed wall seconds and summed CPU seconds."""
    files = sorted(root.rglob("*.tsv"))
    if not files:
        raise SystemExit(f"{root}: no Snakemake benchmark files (*.tsv) under it")
    stages: dict[str, dict[str, float]] = defaultdict(lambda: {"jobs": 0, "wall": 0.0, "cpu": 0.0})
    for path in files:
        with path.open() as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if not rows or "s" not in rows[-1]:
            raise SystemExit(f"{path}: not a Snakemake benchmark file (no 's' column)")
        row = rows[-1]  # a job benchmarked with repeats keeps its last
        stage = path.relative_to(root).parts[0]  # benchmarks/<rule>/...
        stages[stage]["jobs"] += 1
        stages[stage]["wall"] += float(row["s"])
        stages[stage]["cpu"] += float(row.get("cpu_time") or 0.0)
    return dict(stages)


def table(after: dict, before: dict | None) -> str:
    order = sorted(after, key=lambda s: -after[s]["wall"])
    order += [s for s in (before or {}) if s not in after]
    if before is None:
        lines = ["| stage | jobs | job-seconds | CPU seconds |", "|---|---|---|---|"]
        for stage in order:
            a = after[stage]
            lines.append(f"| {stage} | {a['jobs']} | {a['wall']:.0f} | {a['cpu']:.0f} |")
        total = sum(a["wall"] for a in after.values())
        lines.append(f"| all | {sum(a['jobs'] for a in after.values())} | {total:.0f} | |")
        return "\n".join(lines)
    lines = [
        "| stage | jobs before | job-seconds before | jobs after | job-seconds after "
        "| after / before |",
        "|---|---|---|---|---|---|",
    ]
    empty = {"jobs": 0, "wall": 0.0, "cpu": 0.0}
    for stage in order:
        a, b = after.get(stage, empty), before.get(stage, empty)
        ratio = f"{a['wall'] / b['wall']:.2f}" if b["wall"] else "new"
        lines.append(
            f"| {stage} | {b['jobs']} | {b['wall']:.0f} | {a['jobs']} | {a['wall']:.0f} | {ratio} |"
        )
    total_a, total_b = (sum(x["wall"] for x in d.values()) for d in (after, before))
    lines.append(
        f"| all | {sum(x['jobs'] for x in before.values())} | {total_b:.0f} | "
        f"{sum(x['jobs'] for x in after.values())} | {total_a:.0f} | {total_a / total_b:.2f} |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmarks", type=Path, help="a run's benchmarks/ folder")
    parser.add_argument("--before", type=Path, help="an earlier run's benchmarks/ folder")
    args = parser.parse_args(argv)
    before = job_seconds(args.before) if args.before else None
    print(table(job_seconds(args.benchmarks), before))


if __name__ == "__main__":
    main()
