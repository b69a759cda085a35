"""Regenerate the parts of the docs that are derived from the code or from a run, so that they
cannot drift: the `--help` of every stage CLI in its docs/stages page, the config reference in
docs/config.md from workflow/schemas/config.schema.yaml, and the README's demo tables from the
demo runs recorded in docs/demo_runs/ (one per precision). `--check` reports what is stale and
changes nothing (tests/integration/test_docs.py runs it). `--record-demo` records the tables of a
finished `make demo` (results/tables/) with the commit, CPU and precision that produced them,
then regenerates; `--compare-demo` (the end of `make demo`) compares them with the record of
their precision.

    .venv/bin/python scripts/update_docs.py [--check]
    .venv/bin/python scripts/update_docs.py --record-demo   # after `make demo`
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from cft.core.config import schema_node
from cft.core.yaml_files import load_yaml

REPO = Path(__file__).resolve().parents[1]
# A generated block: <!-- generated: KIND ARG --> ... <!-- end generated -->
BLOCK = re.compile(r"(<!-- generated: (\S+) (\S+) -->\n)(.*?)(<!-- end generated -->)", re.S)
HELP_WIDTH = "100"  # argparse wraps at $COLUMNS


def cli_help(module: str) -> str:
    env = {**os.environ, "COLUMNS": HELP_WIDTH, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
    )
    return f"```text\n$ python -m {module} --help\n{result.stdout.rstrip()}\n```\n"


def _type_of(node: dict) -> str:
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return " / ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind:
        return kind
    if "oneOf" in node or "anyOf" in node:
        return "one of several forms"
    return ""


def _one_line(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _rows(prefix: str, node: dict, schema: dict, rows: list[str]) -> None:
    node = schema_node(node, schema)
    default = node.get("default")
    shown_default = (
        f"`{json.dumps(default)}`" if default is not None and not isinstance(default, dict) else ""
    )
    rows.append(
        f"| `{prefix}` | {_type_of(node)} | {shown_default} | "
        f"{_one_line(node.get('description', ''))} |"
    )
    for name, child in node.get("properties", {}).items():
        _rows(f"{prefix}.{name}", child, schema, rows)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):  # a mapping by name: models.<name>, domains.<name>, ...
        _rows(f"{prefix}.<name>", extra, schema, rows)


def config_reference(_: str) -> str:
    schema = load_yaml((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, node in schema["properties"].items():
        _rows(name, node, schema, rows)
    return "\n".join(rows) + "\n"


DEMO_RUNS = REPO / "docs" / "demo_runs"  # one record per precision: bf16.json, fp32.json
DEMO_TABLES = REPO / "results" / "tables"
# What a demo's tables are compared on with a record: everything but their provenance.
NOT_COMPARED = ("provenance",)


def demo_run(precision: str) -> dict:
    path = DEMO_RUNS / f"{precision}.json"
    if not path.is_file():
        raise SystemExit(f"{path}: no recorded demo run in {precision}")
    return json.loads(path.read_text())


def _num(value: float, spec: str) -> str:
    """A number as the README prints it: a true minus sign."""
    return format(value, spec).replace("-", "−")


def _estimate(cell: dict | None, signed: bool = False, digits: int = 1) -> str:
    if cell is None:
        return ""
    value = _num(cell["value"], f"+.{digits}f" if signed else ".2f")
    return f"{value} [{_num(cell['low'], f'.{digits}f')}, {_num(cell['high'], f'.{digits}f')}]"


def demo_table(arg: str) -> str:
    """The README's table of one domain (``arg``: ``<precision>:<domain>``): the first task's
    score with its interval and the paired differences to each reference row, from the demo
    run recorded in that precision."""
    precision, _, domain = arg.partition(":")
    run = demo_run(precision)
    table = run["tables"][domain]
    task = table["tasks"][0]
    refs = list(table["paired"])
    header = [f"{domain}: `{task}`", "score (%) [95% interval]"]
    header += [f"− {ref}, paired" for ref in refs]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table["rows"]:
        key = f"{row}|{task}"
        cells = [row, _estimate(table["intervals"].get(key))]
        cells += [_estimate(table["paired"][ref].get(key), signed=True) for ref in refs]
        lines.append("| " + " | ".join(cells) + " |")
    source = f"`{run['command']}` at commit {run['commit'][:10]}, {run['cpu']}"
    if "precision" in run:  # records before 2026-12-07 did not name it
        precision = run["precision"]
        source += f", trained in {precision['training']}, scored in {precision['evaluation']}"
    source += f", {run['date']}"
    if run["code_changed_since"]:
        source += f"; code changed since: {', '.join(run['code_changed_since'])}"
    lines += ["", f"({source})"]
    return "\n".join(lines) + "\n"


def demo_findings(precision: str) -> str:
    """The README's numbers behind "what it shows", per domain, from the demo run recorded
    in ``precision``."""
    run = demo_run(precision)
    lines = []
    for domain, table in run["tables"].items():
        task = table["tasks"][0]
        trained = [row for row in table["rows"] if row != "Chat"]
        to_chat = [table["paired"]["Chat"][f"{row}|{task}"] for row in trained]
        excluding = sum(cell["low"] > 0 or cell["high"] < 0 for cell in to_chat)
        low, high = min(c["value"] for c in to_chat), max(c["value"] for c in to_chat)
        cft = table["paired"]["Chat (CPT)"][f"Chat (CFT)|{task}"]
        margin = table["paired_margins"]["Chat (CPT)"][f"Chat (CFT)|{task}"]
        half_width = (cft["high"] - cft["low"]) / 2
        lines.append(
            f"- {domain}: trained rows − Chat {_num(low, '+.1f')} to {_num(high, '+.1f')} "
            f"points, {excluding} of {len(trained)} paired intervals exclude zero; CFT − CPT "
            f"{_estimate(cft, signed=True)} points (half-width {half_width:.1f}); "
            f"CFT − CPT log-likelihood margin {_estimate(margin, signed=True, digits=2)} nats"
        )
    return "\n".join(lines) + "\n"


def cpu_model() -> str:
    """The CPU's name, its widest matmul instructions (what decides fp32 against bf16 and the
    demo's numbers: docs/benchmarks.md) and its core count."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    name = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    flags = set(next((line for line in lines if line.startswith("flags")), "").split())
    widest = next(
        (label for flag, label in (("amx_tile", "AMX"), ("avx512_bf16", "AVX512-bf16, no AMX"),
                                   ("avx512f", "AVX512, no bf16"), ("avx2", "AVX2 only"))
         if flag in flags),
        None,
    )  # fmt: skip
    return f"{name}{f' ({widest})' if widest else ''}, {os.cpu_count()} cores"


CODE_PATHS = ["src", "workflow", "config", "pyproject.toml", "requirements"]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def demo_precision(results: Path) -> dict:
    """The dtypes the demo trained and scored in (``precision: auto`` and ``dtype: native``
    choose per CPU), read off its train metrics and eval records."""
    trained = {
        json.loads(path.read_text())["precision"]["chosen"]
        for path in results.glob("models/*/*/*/seed*/train_metrics.json")
    }
    scored = {
        json.loads(path.read_text())["lm_eval_arguments"]["dtype"]
        for path in results.glob("eval/**/*.json")
    }
    return {"training": ", ".join(sorted(trained)), "evaluation": ", ".join(sorted(scored))}


def demo_tables(tables_root: Path) -> dict:
    """A finished demo's table.json files, by domain."""
    tables = {
        path.parent.parent.name: json.loads(path.read_text())
        for path in sorted(tables_root.glob("*/*/table.json"))
    }
    if not tables:
        raise SystemExit(f"no {tables_root}/<domain>/<model>/table.json: run `make demo` first")
    return tables


def precision_class(precision: dict) -> str:
    """The record a demo run belongs to: its training precision (``bf16`` or ``fp32``), which
    its evaluation dtype follows (``evaluation.dtype: native``); a mixed run has none."""
    expected = {"bf16": "bfloat16", "fp32": "float32"}
    if expected.get(precision["training"]) != precision["evaluation"]:
        raise SystemExit(
            f"the demo trained in {precision['training']} and scored in "
            f"{precision['evaluation']}: not one of the recorded precisions "
            f"({', '.join(f'{t} with {e}' for t, e in expected.items())})"
        )
    return precision["training"]


def record_demo(tables_root: Path = DEMO_TABLES) -> None:
    """docs/demo_runs/<precision>.json from a finished demo's table.json files: the commit
    their provenance names, the code files changed between it and HEAD (none, for a demo run
    on HEAD), the CPU and the precision. Refused while the code has uncommitted changes: the
    record must name its code."""
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
    if dirty:
        raise SystemExit(f"uncommitted changes; commit, rerun `make demo`, then record:\n{dirty}")
    tables = demo_tables(tables_root)
    commits = {table["provenance"]["git_commit"] for table in tables.values()}
    if len(commits) != 1:
        raise SystemExit(f"the tables come from several commits {sorted(commits)}: rerun the demo")
    commit = commits.pop()
    precision = demo_precision(tables_root.parent)
    name = precision_class(precision)
    record = {
        "commit": commit,
        "code_changed_since": _git(
            "diff", "--name-only", commit, "HEAD", "--", *CODE_PATHS
        ).split(),
        "cpu": cpu_model(),
        "precision": precision,
        "date": datetime.date.today().isoformat(),
        "command": "make demo" if name == auto_precision() else f"make demo PRECISION={name}",
        "tables": tables,
    }
    DEMO_RUNS.mkdir(exist_ok=True)
    (DEMO_RUNS / f"{name}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def auto_precision() -> str:
    """What ``training.precision: auto`` picks on this CPU."""
    from cft.core.devices import native_bf16

    return "bf16" if native_bf16(cuda=False)[0] else "fp32"


def cpu_kind(cpu: str) -> str:
    """The kind of CPU a :func:`cpu_model` line names (its widest matmul instructions, in
    brackets), which decides the kernels and so the last bits of a bf16 run."""
    match = re.search(r"\(([^()]*)\), \d+ cores$", cpu)
    return match[1] if match else cpu


def table_differences(ours: dict, recorded: dict, where: str = "") -> list[str]:
    """Where two tables' numbers differ (beyond 1e-9), as ``path: ours != recorded``."""
    if isinstance(ours, dict) and isinstance(recorded, dict):
        found = []
        for key in sorted(set(ours) | set(recorded)):
            if key not in ours or key not in recorded:
                found.append(f"{where}/{key}: {'missing' if key not in ours else 'not recorded'}")
            else:
                found += table_differences(ours[key], recorded[key], f"{where}/{key}")
        return found
    if isinstance(ours, float | int) and isinstance(recorded, float | int):
        return [] if abs(ours - recorded) <= 1e-9 else [f"{where}: {ours} != {recorded}"]
    return [] if ours == recorded else [f"{where}: {ours!r} != {recorded!r}"]


def compare_demo(tables_root: Path = DEMO_TABLES) -> int:
    """Compare a finished demo's tables with the record of the precision it ran in: 0 when
    every number is the record's, or when they differ on another kind of CPU than the
    record's (kernels round differently between CPU kinds; the difference is printed); 1 when
    they differ on the record's kind of CPU (a numerics change: rerecord if it is meant)."""
    precision = precision_class(demo_precision(tables_root.parent))
    run = demo_run(precision)
    tables = demo_tables(tables_root)

    def compared(by_domain: dict) -> dict:
        return {
            domain: {key: value for key, value in table.items() if key not in NOT_COMPARED}
            for domain, table in by_domain.items()
        }

    differences = table_differences(compared(tables), compared(run["tables"]))
    record = (
        f"docs/demo_runs/{precision}.json ({run['command']} at {run['commit'][:10]}, {run['cpu']})"
    )
    if not differences:
        print(f"The demo's tables ({precision}) equal the README's record: {record}.")
        return 0
    listing = "\n  ".join(differences[:20]) + ("\n  ..." if len(differences) > 20 else "")
    same_kind = cpu_kind(cpu_model()) == cpu_kind(run["cpu"])
    print(
        f"The demo's tables ({precision}) differ from the README's record {record} in "
        f"{len(differences)} number(s):\n  {listing}\n"
        + ("On the record's kind of CPU: a numerics change. If it is meant, record this run "
           "(scripts/update_docs.py --record-demo)." if same_kind else
           f"This CPU ({cpu_model()}) is of another kind than the record's: its kernels "
           "round differently."),
        file=sys.stderr,
    )  # fmt: skip
    return 1 if same_kind else 0


GENERATORS = {
    "cli": cli_help,
    "config": config_reference,
    "demo-table": demo_table,
    "demo-findings": demo_findings,
}


def render(text: str) -> str:
    def fill(match: re.Match) -> str:
        kind, arg = match.group(2), match.group(3)
        return match.group(1) + GENERATORS[kind](arg) + match.group(5)

    return BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report stale pages, write nothing")
    parser.add_argument(
        "--record-demo", action="store_true", help="record results/tables/ of a finished demo"
    )
    parser.add_argument(
        "--compare-demo",
        action="store_true",
        help="compare results/tables/ of a finished demo with the record of its precision",
    )
    args = parser.parse_args(argv)
    if args.compare_demo:
        return compare_demo()
    if args.record_demo:
        record_demo()
    stale = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        text = page.read_text()
        if not BLOCK.search(text):
            continue
        fresh = render(text)
        if fresh != text:
            stale.append(str(page.relative_to(REPO)))
            if not args.check:
                page.write_text(fresh)
    if stale:
        verb = "stale" if args.check else "updated"
        print(f"{verb}: {', '.join(stale)}")
        if args.check:
            print("run: .venv/bin/python scripts/update_docs.py")
    return 1 if (stale and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
