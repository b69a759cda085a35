"""Snakemake entry point of the corpus and model downloads (cft.data.download); an evaluation task's
datasets are fetched by download_eval_task.py, in the evaluation environment."""

from pathlib import Path

from cft.core.config import domain_source
from cft.core.logging_utils import start_job

start_job(snakemake)
out = Path(snakemake.output[0])
if snakemake.rule == "download_corpus":
    from cft.data.download import download_corpus

    domain = snakemake.wildcards.domain
    download_corpus(domain, domain_source(snakemake.config, domain), out)
else:  # download_model
    from cft.data.download import download_model

    model = snakemake.wildcards.model
    download_model(model, snakemake.config["models"][model], out)
