"""FinBen's two protocols side by side on the same models: PIXIU's generative scoring and the
log-likelihood one (``evaluation.finben.protocol``), per task and model, with intervals.

    python bench/finben_protocols.py --config config/config.yaml --domain finance \\
        --out results/bench/finben_protocols

Evaluates the domain's base model and its trained models (results/models/..., first seed) on
the FinBen-format tasks (``demo_finben_*`` offline, or ``finben_*``) under both protocols,
through the evaluation stage's own ``run``; writes every record and per-sample log, and
``protocols.json`` / ``protocols.md``: weighted F1 [95% interval], accuracy and missing rate
per (model, task, protocol), and the paired difference generative - loglikelihood.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cft.core import paths  # noqa: E402
from cft.core.cli import stage_config  # noqa: E402
from cft.core.config import training_seeds  # noqa: E402
from cft.core.grid import trained_methods  # noqa: E402
from cft.core.io import write_json  # noqa: E402
from cft.core.logging_utils import setup_logging  # noqa: E402
from cft.evaluation import evaluate as evaluation  # noqa: E402
from cft.evaluation import task_folders  # noqa: E402
from cft.tables.uncertainty import bootstrap_of, estimate, paired_estimate, read_outcomes  # noqa: E402

PROTOCOLS = ("loglikelihood", "generative")


def finben_tasks(prefix: str) -> list[str]:
    """The FinBen-format tasks named ``prefix``* (their suite names, without the protocol)."""
    return sorted(
        task
        for task in task_folders.task_files()
        if task.startswith(prefix) and not task.endswith("_generative")
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--domain", default="finance")
    parser.add_argument("--tasks", default="demo_finben_", help="task name prefix")
    parser.add_argument("--out", type=Path, default=Path("results/bench/finben_protocols"))
    args = parser.parse_args(argv)
    setup_logging()
    config = stage_config(argparse.Namespace(config=args.config, domain=args.domain))
    model = config["grid"]["models"][0]
    seed = training_seeds(config)[0]
    runs = {"chat": (Path(paths.base_model_dir(model)), None)}
    for method in trained_methods(config):
        runs[method] = (Path(paths.model_dir(args.domain, model, method, seed)), seed)
    tasks = finben_tasks(args.tasks)
    boot = bootstrap_of(config["evaluation"]["confidence"])
    results: dict = {"model": model, "domain": args.domain, "tasks": tasks, "cells": {}}
    for protocol in PROTOCOLS:
        setting = copy.deepcopy(config)
        setting["evaluation"]["finben"]["protocol"] = protocol
        for method, (folder, run_seed) in runs.items():
            for task in tasks:
                out = args.out / protocol / method / f"{task}.json"
                if not out.is_file():
                    evaluation.run(setting, args.domain, model, method, task, model_dir=folder,
                                   out_json=out, seed=run_seed)  # fmt: skip
                record = json.loads(out.read_text())
                f1 = read_outcomes(paths.samples_path(out), "weighted_f1")
                results["cells"][f"{protocol}|{method}|{task}"] = {
                    "weighted_f1": estimate(boot, method, {task: [f1]}).scaled(100).__dict__,
                    "acc": 100 * record["metrics"]["acc"],
                    "missing": 100 * record["metrics"].get("missing", 0.0),
                    "wall_seconds": record["wall_seconds"],
                    "outcomes": f1,
                }
    lines = [
        f"FinBen protocols on {model} ({args.domain}): weighted F1 % [95% interval], "
        "accuracy %, missing %; gap = generative - loglikelihood, paired over questions",
        "",
        "| model | task | loglikelihood F1 | acc | generative F1 | acc | missing | gap [95%] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in runs:
        for task in tasks:
            ll = results["cells"][f"loglikelihood|{method}|{task}"]
            gen = results["cells"][f"generative|{method}|{task}"]
            gap = paired_estimate(
                boot, "generative", {task: [gen.pop("outcomes")]},
                "loglikelihood", {task: [ll.pop("outcomes")]},
            ).scaled(100)  # fmt: skip
            results["cells"][f"gap|{method}|{task}"] = gap.__dict__
            f1 = {name: c["weighted_f1"] for name, c in (("ll", ll), ("gen", gen))}
            lines.append(
                f"| {method} | {task} | {f1['ll']['value']:.1f} [{f1['ll']['low']:.1f}, "
                f"{f1['ll']['high']:.1f}] | {ll['acc']:.1f} | {f1['gen']['value']:.1f} "
                f"[{f1['gen']['low']:.1f}, {f1['gen']['high']:.1f}] | {gen['acc']:.1f} | "
                f"{gen['missing']:.1f} | {gap.value:+.1f} [{gap.low:+.1f}, {gap.high:+.1f}] |"
            )
    write_json(args.out / "protocols.json", results)
    (args.out / "protocols.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
