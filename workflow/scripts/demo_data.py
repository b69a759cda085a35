"""Snakemake entry point: generate a demo domain's fictional corpus and questions."""

from pathlib import Path

from cft.core.config import domain_source
from cft.core.logging_utils import start_job
from cft.data import demo_data

start_job(snakemake)
source = domain_source(snakemake.config, snakemake.wildcards.domain)
demo_data.run(
    generator=source["generator"],
    n_entities=source["n_entities"],
    documents_per_entity=source["documents_per_entity"],
    seed=source["seed"],
    questions_per_fact=source["questions_per_fact"],
    out_dir=Path(snakemake.output.documents).parent,
)
