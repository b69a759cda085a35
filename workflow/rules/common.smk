import sys
from pathlib import Path

# The rules import the package from the checkout, installed or not (cluster conda envs).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from cft.config import (  # noqa: E402
    domain_source,
    downloaded_domains,
    evaluated_models,
    hub_models,
    validate_config,
)

# JSON Schema (config/schema.yaml, via snakemake.utils.validate) plus cross-reference and path
# checks; stops before any job with a message naming the key, the bad value and what is allowed.
validate_config(
    config,
    source=", ".join(map(str, workflow.configfiles)) or "config",
    base_dir=Path(workflow.basedir),
)

GRID = config["grid"]
ALL_MODELS = evaluated_models(config)


wildcard_constraints:
    domain="|".join(config["domains"]),
    model="|".join(config["models"]),
    method="|".join(GRID["methods"]),


def is_demo(domain):
    return domain_source(config, domain)["type"] == "demo"


def raw_corpus_dir(domain):
    """Folder holding a domain's raw source: generated (demo), downloaded, or given in config."""
    source = domain_source(config, domain)
    if source["type"] == "demo":
        return f"results/demo_data/{domain}"
    return source.get("local_path") or f"resources/corpora/{domain}"


def corpus_input(wildcards):
    """The job that produces the raw source, if any (a configured local_path needs none)."""
    source = domain_source(config, wildcards.domain)
    if source["type"] == "demo":
        return [f"results/demo_data/{wildcards.domain}/documents.jsonl"]
    if source.get("local_path"):
        return []
    return [f"resources/corpora/{wildcards.domain}"]


def base_model_input(wildcards):
    """Hub models need their download manifest; packaged and local models need nothing."""
    if wildcards.model in hub_models(config):
        return [f"resources/models/{wildcards.model}.json"]
    return []


def base_model_mem_mb(wildcards, attempt):
    """Linking a hub model needs little; re-saving .bin weights loads the whole model."""
    return (32000 if wildcards.model in hub_models(config) else 8000) * attempt


def all_outputs():
    outputs = expand("results/base_models/{model}", model=ALL_MODELS)
    outputs += expand(
        "results/corpus/{domain}/{file}",
        domain=GRID["domains"],
        file=["documents.parquet", "stats.json"],
    )
    outputs += [
        f"results/demo_data/{domain}/questions.jsonl"
        for domain in GRID["domains"]
        if is_demo(domain)
    ]
    return outputs
