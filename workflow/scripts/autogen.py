"""Snakemake entry point: generate TextAdaptCFT prompts for a domain (cft.packing.autogen).

With ``autogen.backend: vllm`` and no vLLM in this interpreter, the stage runs in the vLLM
environment (cft.core.vllm_env). The guard keeps vLLM's spawned engine process from rerunning it.
"""

from pathlib import Path

from cft.core import vllm_env
from cft.core.logging_utils import start_job
from cft.packing import autogen

if __name__ == "__main__":
    if snakemake.config["autogen"]["backend"] == "vllm" and not vllm_env.importable_here():
        vllm_env.run_stage(
            "cft.packing.autogen",
            snakemake.config,
            [
                *("--domain", snakemake.wildcards.domain),
                *("--corpus", snakemake.input.corpus),
                *("--model-dir", snakemake.input.generator),
                *("--out", snakemake.output.table),
            ],
            snakemake.log[0],
        )
    else:
        start_job(snakemake)
        autogen.run(
            snakemake.config,
            snakemake.wildcards.domain,
            corpus_table=Path(snakemake.input.corpus),
            model_dir=Path(snakemake.input.generator),
            out=Path(snakemake.output.table),
        )
