"""Knowledge-acquisition curves: held-out accuracy against training tokens.

The paper says CFT learns "rapidly"; a final score cannot show that. This stage trains one
(domain, model, method, seed) run with the workflow's own recipe, saves a checkpoint at
``evaluation.curves.points`` evenly spaced steps, and scores every checkpoint (and the untrained
base model, at 0 tokens) on the domain's knowledge task with lm-eval, each with its bootstrap
interval (cft.tables.uncertainty). Scoring between steps does not move the run, so on CPU its last
point is the train stage's model.

    python -m cft.evaluation.knowledge_curve --domain biomed --model smollm2-135m-instruct \
        --method cft
"""

from __future__ import annotations

import copy
import json
import logging
import math
import tempfile
from pathlib import Path

from cft.core import paths
from cft.core.cli import stage_config, stage_parser
from cft.core.config import model_setting, training_seeds
from cft.core.errors import CftError
from cft.core.io import write_json
from cft.core.logging_utils import setup_logging
from cft.core.paths import curve_json
from cft.core.settings import stage_provenance, stage_settings
from cft.evaluation.harness import evaluate
from cft.tables.uncertainty import Bootstrap, bootstrap_of, estimate, read_outcomes

log = logging.getLogger(__name__)

METRIC = "acc"


class CurveError(CftError, ValueError):
    """The curve cannot be drawn; the message names the setting."""


def save_steps_for(n_blocks: int, train_cfg: dict, points: int) -> int:
    """Steps between checkpoints so that a run of ``n_blocks`` blocks gives ``points`` of
    them (the Trainer's step count: ceil(blocks / global batch) per epoch)."""
    steps = math.ceil(math.ceil(n_blocks / train_cfg["global_batch_size"]) * train_cfg["epochs"])
    steps = min(steps, train_cfg.get("max_steps") or steps)
    return max(1, steps // points)


def score_point(
    config: dict,
    task: str,
    folder: Path,
    boot: Bootstrap,
    scratch: Path,
    device: str,
    template_kwargs: dict,
) -> dict:
    """The knowledge task's accuracy of one model folder on ``device`` (the training
    process's own), with its interval, in percent."""
    results, _ = evaluate(config, task, folder, device=device, template_kwargs=template_kwargs)
    samples = scratch / f"{folder.name}.samples.jsonl"
    samples.write_text("".join(json.dumps(s, default=str) + "\n" for s in results["samples"][task]))
    outcomes = read_outcomes(samples, METRIC)
    accuracy = estimate(boot, "curve", {task: [outcomes]}).scaled(100)
    margin = estimate(boot, "curve", {task: [outcomes]}, "margin")
    return {
        "accuracy": accuracy.value,
        "low": accuracy.low,
        "high": accuracy.high,
        "margin": margin.value,
        "margin_low": margin.low,
        "margin_high": margin.high,
        "questions": outcomes.n,
    }


def checkpoint_scorer(
    config: dict,
    task: str,
    base_model_dir: Path,
    boot,
    scratch: Path,
    device: str,
    template_kwargs: dict,
):
    """A TrainerCallback that scores each checkpoint as soon as it is saved (before the
    Trainer's rotation removes older ones)."""
    from transformers import AutoTokenizer, TrainerCallback

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)

    class ScoreCheckpoints(TrainerCallback):
        def __init__(self):
            self.points: list[dict] = []

        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            tokenizer.save_pretrained(folder)  # lm-eval loads the tokenizer from the folder
            # lm-eval reseeds the global RNGs; the Trainer's data order does not depend on
            # them (accelerate's sampler is seeded from data_seed and the epoch), so the run
            # keeps the train stage's trajectory (tested).
            point = score_point(config, task, folder, boot, scratch, device, template_kwargs)
            point |= {"step": state.global_step, "tokens": int(state.num_input_tokens_seen)}
            log.info(
                "step %d: %.1f%% [%.1f, %.1f]",
                *(point[k] for k in ("step", "accuracy", "low", "high")),
            )
            self.points.append(point)

    return ScoreCheckpoints()


def run(
    config: dict,
    domain: str,
    model: str,
    method: str,
    seed: int,
    *,
    tokenized_dir: Path,
    base_model_dir: Path,
    out_json: Path,
) -> dict:
    from datasets import load_from_disk

    from cft.training.launch import curve_resources
    from cft.training.recipe import Job
    from cft.training.run import train

    curves = config["evaluation"]["curves"]
    task = curves["tasks"].get(domain)
    if task is None:
        raise CurveError(f"evaluation.curves.tasks has no task for domain {domain!r}")
    confidence = config["evaluation"]["confidence"]
    boot = bootstrap_of(confidence)
    run_config = copy.deepcopy(config)
    train_cfg = run_config["training"]
    n_blocks = len(load_from_disk(str(tokenized_dir))["train"])
    train_cfg["save_steps"] = save_steps_for(n_blocks, train_cfg, curves["points"])
    with tempfile.TemporaryDirectory(prefix="cft-curve-") as tmp:
        scratch = Path(tmp)
        job = Job(
            run_config,
            domain,
            model,
            method,
            str(tokenized_dir),
            str(base_model_dir),
            str(scratch / "model"),
            str(scratch / "checkpoints"),
            curve_resources(run_config, model),
            seed=seed,
        )
        device = "cuda" if job.cuda else "cpu"  # scoring runs where the model trains
        template_kwargs = model_setting(run_config, model, "chat_template_kwargs")
        base = score_point(
            run_config, task, Path(base_model_dir), boot, scratch, device, template_kwargs
        )
        scorer = checkpoint_scorer(
            run_config, task, Path(base_model_dir), boot, scratch, device, template_kwargs
        )
        scorer.points = [base | {"step": 0, "tokens": 0}]
        metrics = train(job, callbacks=[scorer])
        if scorer.points[-1]["step"] != metrics["optimizer_steps"]:  # the last step, if unsaved
            final = score_point(
                run_config, task, scratch / "model", boot, scratch, device, template_kwargs
            )
            total = metrics["tokens_this_run"]
            scorer.points.append(final | {"step": metrics["optimizer_steps"], "tokens": total})
    record = {
        "domain": domain,
        "model": model,
        "method": method,
        "seed": seed,
        "task": task,
        "metric": METRIC,
        "points": scorer.points,
        "save_steps": train_cfg["save_steps"],
        "interval": f"{boot.level:.0%} bootstrap over {boot.resample} ({boot.iters} resamples)",
        "provenance": stage_provenance(
            "knowledge_curve",
            stage_settings(config, "knowledge_curve", domain=domain, model=model),
            seed=seed,
            backend=device,
        ),
    }
    write_json(out_json, record)
    return record


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--seed", type=int, help="default: the first training seed")
    parser.add_argument(
        "--out", help=f"default: {curve_json('{domain}', '{model}', '{method}', '{seed}')}"
    )
    args = parser.parse_args(argv)
    setup_logging()
    config = stage_config(args)
    seed = training_seeds(config)[0] if args.seed is None else args.seed
    run(
        config,
        args.domain,
        args.model,
        args.method,
        seed,
        tokenized_dir=Path(paths.tokenized_dir(args.domain, args.model, args.method)),
        base_model_dir=Path(paths.base_model_dir(args.model)),
        out_json=Path(args.out or curve_json(args.domain, args.model, args.method, seed)),
    )


if __name__ == "__main__":
    main()
