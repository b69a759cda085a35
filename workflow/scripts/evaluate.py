"""Snakemake entry point: one lm-eval task on one model (cft.evaluation.evaluate).

With ``evaluation.backend: vllm`` and no vLLM in this interpreter, the stage runs in the vLLM
environment (cft.core.vllm_env). The guard keeps vLLM's spawned engine process from rerunning it.
"""

from pathlib import Path

from cft.core import vllm_env
from cft.core.logging_utils import start_job
from cft.core.paths import parse_run
from cft.evaluation import evaluate as evaluation

if __name__ == "__main__":
    method, seed = parse_run(snakemake.wildcards.run)
    if snakemake.config["evaluation"]["backend"] == "vllm" and not vllm_env.importable_here():
        vllm_env.run_stage(
            "cft.evaluation.evaluate",
            snakemake.config,
            [
                *("--domain", snakemake.wildcards.domain),
                *("--model", snakemake.wildcards.model),
                *("--method", method),
                *("--task", snakemake.wildcards.task),
                *(("--seed", str(seed)) if seed is not None else ()),
                *("--model-dir", snakemake.input.model),
                *("--out", snakemake.output.json),
            ],
            snakemake.log[0],
        )
    else:
        start_job(snakemake)
        evaluation.run(
            snakemake.config,
            snakemake.wildcards.domain,
            snakemake.wildcards.model,
            method,
            snakemake.wildcards.task,
            model_dir=Path(snakemake.input.model),
            out_json=Path(snakemake.output.json),
            samples_jsonl=Path(snakemake.output.samples),
            seed=seed,
        )
