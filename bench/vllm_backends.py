"""Benchmark: vLLM against transformers for TextAdaptCFT generation, and lm-eval's vllm backend
against its hf backend for evaluation, on the demo's model, in one run.

- Generation: the demo's autogen settings (``config/config.yaml``: max_new_tokens, sampling,
  batch size for transformers) on the chat-formatted inputs of ``--docs`` demo documents,
  through the stage's own generators (``cft.packing.generators.TransformersGenerator`` here,
  ``VllmGenerator`` in the vLLM environment, cft.core.vllm_env). Reported: model load seconds,
  generation seconds and generated tokens/s (the replies re-tokenized by the same tokenizer,
  so both count alike).
- Evaluation: ``python -m cft.evaluation.evaluate`` on the demo's ``--task`` with each backend
  in its own environment, the demo's dtype rule (float32 on a CPU without native bf16). Reported:
  the job's wall seconds (process start to record) and lm-eval's part of it.

Both use the same cores, one after the other. ``--model-dir``: the converted demo model
(``results/base_models/smollm2-135m-instruct`` after ``make demo``; converted here if absent).

    .venv/bin/python bench/vllm_backends.py --docs 32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
DEMO_MODEL = "smollm2-135m-instruct"
RESULT_PREFIX = "vllm generation figures: "


def demo_config() -> dict:
    from cft.core.config import load_config

    return load_config(REPO / "config" / "config.yaml")


def model_folder(path: str | None) -> Path:
    folder = Path(path or REPO / "results" / "base_models" / DEMO_MODEL)
    if not (folder / "config.json").is_file():
        from cft.data import base_model

        print(f"converting the packaged model into {folder}", file=sys.stderr)
        base_model.run(demo_config(), DEMO_MODEL, folder)
    return folder


def generation_inputs(tokenizer, config: dict, n_docs: int) -> tuple[list, list]:
    """Chat-formatted inputs and per-document seeds of ``n_docs`` demo documents."""
    from cft.core.config import load_prompt_file, resolve_path
    from cft.data.demo_data import generate
    from cft.packing.generators import build_inputs
    from cft.packing.packer import stable_int

    docs, _ = generate("biomed", n_docs, 1, seed=config["seed"])
    spec = load_prompt_file(resolve_path(config["prompts"]["autogen"]), "autogen")
    texts = [doc["text"] for doc in docs[:n_docs]]
    inputs = build_inputs(
        tokenizer,
        texts,
        spec["meta_prompt"],
        spec["document_template"],
        config["autogen"]["max_input_chars"],
    )
    return inputs, [stable_int(config["seed"], doc["doc_id"]) for doc in docs[:n_docs]]


def time_generation(backend: str, model_dir: Path, n_docs: int) -> dict:
    """Load the stage's generator for ``backend`` in this process and time one pass."""
    from cft.packing.generators import BACKENDS

    config = demo_config()
    settings = {**config["autogen"], "backend": backend, "gpus": 0}
    start = time.perf_counter()
    generator = BACKENDS[backend](model_dir, settings)
    loaded = time.perf_counter()
    inputs, seeds = generation_inputs(generator.tokenizer, config, n_docs)
    prep = time.perf_counter()
    replies = generator.generate(inputs, seeds, shard_seed=config["seed"])
    done = time.perf_counter()
    tokens = sum(len(generator.tokenizer(r, add_special_tokens=False).input_ids) for r in replies)
    return {
        "backend": backend,
        "documents": len(replies),
        "load_s": loaded - start,
        "generate_s": done - prep,
        "tokens": tokens,
        "tokens_per_s": tokens / (done - prep),
    }


def vllm_generation(model_dir: Path, n_docs: int) -> dict:
    from cft.core import vllm_env

    result = subprocess.run(
        [str(vllm_env.interpreter()), __file__, "--child-generate", str(model_dir),
         "--docs", str(n_docs)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    if result.returncode:
        sys.exit(f"vLLM generation failed:\n{result.stderr[-4000:]}")
    # vLLM logs to stdout too, its shutdown after the figures
    figures = [line for line in result.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    return json.loads(figures[-1].removeprefix(RESULT_PREFIX))


def time_evaluation(backend: str, python: Path, model_dir: Path, task: str, tmp: Path) -> dict:
    config = demo_config()
    config["evaluation"]["backend"] = backend
    config_file = tmp / f"{backend}.yaml"
    config_file.write_text(yaml.safe_dump(config))
    out = tmp / backend / f"{task}.json"
    domain = "finance" if "finance" in task or "finben" in task else "biomed"
    start = time.perf_counter()
    result = subprocess.run(
        [str(python), "-m", "cft.evaluation.evaluate", "--config", str(config_file),
         "--domain", domain, "--model", DEMO_MODEL, "--method", "chat", "--task", task,
         "--model-dir", str(model_dir), "--out", str(out)],
        capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    wall = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"{backend} evaluation failed:\n{result.stderr[-4000:]}")
    record = json.loads(out.read_text())
    return {
        "backend": backend,
        "task": task,
        "questions": record["n_samples"].get("effective"),
        "dtype": record["lm_eval_arguments"]["dtype"],
        "wall_s": wall,
        "stage_s": record["wall_seconds"],
        "metrics": record["metrics"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=32, help="documents to write prompts for")
    parser.add_argument("--task", default="demo_knowledge_biomed_cloze")
    parser.add_argument("--model-dir", help="the converted demo model folder")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--child-generate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_generate:  # in the vLLM environment
        figures = time_generation("vllm", Path(args.child_generate), args.docs)
        print(RESULT_PREFIX + json.dumps(figures), flush=True)
        return

    from cft.core import vllm_env
    from cft.core.provenance import provenance

    model_dir = model_folder(args.model_dir)
    generation = [
        time_generation("transformers", model_dir, args.docs),
        vllm_generation(model_dir, args.docs),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        evaluation = [
            time_evaluation("hf", Path(sys.executable), model_dir, args.task, Path(tmp)),
            time_evaluation("vllm", vllm_env.interpreter(), model_dir, args.task, Path(tmp)),
        ]
    print(f"generation, {args.docs} demo documents ({model_dir.name}):")
    for row in generation:
        print(
            f"  {row['backend']:<12} load {row['load_s']:6.1f} s  generate "
            f"{row['generate_s']:6.1f} s  {row['tokens']:5d} tokens  "
            f"{row['tokens_per_s']:6.1f} tokens/s"
        )
    ratio = generation[1]["tokens_per_s"] / generation[0]["tokens_per_s"]
    print(f"  vllm / transformers tokens/s: {ratio:.2f}")
    print(f"evaluation, {args.task}:")
    for row in evaluation:
        print(
            f"  {row['backend']:<12} {row['questions']} questions, {row['dtype']}: "
            f"{row['wall_s']:6.1f} s wall ({row['stage_s']:.1f} s in the stage)  "
            f"metrics {row['metrics']}"
        )
    print(f"  vllm / hf wall seconds: {evaluation[1]['wall_s'] / evaluation[0]['wall_s']:.2f}")
    if args.json:
        record = {
            "generation": generation,
            "evaluation": evaluation,
            "command": " ".join(sys.argv),
            "provenance": provenance({"docs": args.docs, "task": args.task}, backend="cpu"),
        }
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
