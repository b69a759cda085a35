"""Snakemake entry point: one model scored on every task of its domain's suite, in one process
(cft.evaluation.evaluate), the records that are still current kept.

With ``evaluation.backend: vllm`` and no vLLM in this interpreter, the stage runs in the vLLM
environment (cft.core.vllm_env). The guard keeps vLLM's spawned engine process from rerunning it.
"""

from pathlib import Path

from cft.core import vllm_env
from cft.core.grid import suite
from cft.core.logging_utils import start_job
from cft.core.paths import parse_run, task_record
from cft.evaluation import evaluate as evaluation

if __name__ == "__main__":
    method, seed = parse_run(snakemake.wildcards.run)
    domain, model = snakemake.wildcards.domain, snakemake.wildcards.model
    tasks = suite(snakemake.config, domain)
    folder = snakemake.output.records
    if snakemake.config["evaluation"]["backend"] == "vllm" and not vllm_env.importable_here():
        vllm_env.run_stage(
            "cft.evaluation.evaluate",
            snakemake.config,
            [
                *("--domain", domain),
                *("--model", model),
                *("--method", method),
                *("--task", *tasks),
                *(("--seed", str(seed)) if seed is not None else ()),
                *("--model-dir", snakemake.input.model),
                *("--out-dir", folder),
                "--keep-current",
            ],
            snakemake.log[0],
        )
    else:
        start_job(snakemake)
        evaluation.run_tasks(
            snakemake.config,
            domain,
            model,
            method,
            {task: Path(task_record(folder, task)) for task in tasks},
            model_dir=Path(snakemake.input.model),
            seed=seed,
            keep_current=True,
        )
