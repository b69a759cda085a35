import json
import os
import re
import sys
from pathlib import Path

from snakemake.utils import update_config

# The rules and every job's entry script (workflow/scripts, through the environment it
# inherits) import the package from the checkout, installed or not (cluster conda envs).
# workflow.basedir is workflow/ (the Snakefile's folder); config paths and src/ are relative
# to the checkout.
REPO_DIR = Path(workflow.basedir).parent
SOURCE_DIR = str(REPO_DIR / "src")
sys.path.insert(0, SOURCE_DIR)
SEARCH_PATH = os.environ.get("PYTHONPATH", "").split(os.pathsep)
if SOURCE_DIR not in SEARCH_PATH:
    os.environ.update(
        PYTHONPATH=os.pathsep.join(filter(None, [SOURCE_DIR, *SEARCH_PATH]))
    )

from cft.data import finben_demo  # noqa: E402
from cft.core import grid, paths  # noqa: E402
from cft.evaluation import task_folders  # noqa: E402
from cft.core.grid import table_folders  # noqa: E402
from cft.core.config import (  # noqa: E402
    autogen_model,
    domain_source,
    downloaded_domains,
    evaluated_models,
    hub_models,
    read_config_file,
    resolve_path,
    training_seeds,
    typed_overrides,
    validate_config,
)
from cft.core.methods import METHODS, UNTRAINED  # noqa: E402
from cft.training.launch import curve_resources, train_resources  # noqa: E402
from cft.core.paths import (  # noqa: E402
    curve_json,
    model_dir,
    parse_run,
    run_name,
    table_file,
)
from cft.core.io import OutputError, check_output, file_sha256  # noqa: E402
from cft.core.settings import job_digest  # noqa: E402
from cft.tables.table import load_reference, reported_rows  # noqa: E402
from cft.synthetic import CONDITIONS as SYNTHETIC_CONDITIONS  # noqa: E402
from cft.synthetic import TASKS as SYNTHETIC_TASKS  # noqa: E402
from cft.training.launch import gres_of  # noqa: E402

# PyYAML keeps the last of a key written twice; the config files are read again to refuse it.
for config_file in workflow.configfiles:
    read_config_file(config_file)
# --config leaves nested values as strings: typed again, as in a config file
OVERRIDES = typed_overrides(workflow.config_settings.config)
update_config(config, OVERRIDES)
# JSON Schema (workflow/schemas/config.schema.yaml, via snakemake.utils.validate) plus cross-reference and path
# checks; stops before any job with a message naming the key, the bad value and what is allowed.
validate_config(
    config,
    source=", ".join(
        [*map(str, workflow.configfiles), *(["--config"] if OVERRIDES else [])]
    )
    or "config",
    base_dir=REPO_DIR,
)

GRID = config["grid"]
ALL_MODELS = evaluated_models(config)
# lm-eval task folders: the project's and evaluation.task_paths
TASK_DIRS = task_folders.task_dirs(config)
task_folders.check_corpus_tasks(config, TASK_DIRS)


SEEDS = training_seeds(config)
# The model chain (demo data, corpus, base model, prompts, tokenization, training, evaluation)
# goes before the synthetic experiment's independent one-core jobs, and each synthetic
# pretraining before the fine-tunings: the short fine-tunings then fill the cores the chain's
# last jobs leave idle, instead of the chain's tail or a late pretraining running on one core.
MODEL_CHAIN_PRIORITY = 2
SYNTHETIC_PRETRAIN_PRIORITY = 1


wildcard_constraints:
    domain="|".join(config["domains"]),
    model="|".join(config["models"]),
    method="|".join(GRID["methods"]),
    seed=r"\d+",
    # one evaluated model: `chat` (the base model) or `{method}/seed{seed}` (a training run)
    run="|".join(
        [UNTRAINED] + [rf"{m}/seed\d+" for m in GRID["methods"] if m != UNTRAINED]
    ),


def digest_of(stage):
    """A rule's `digest` param: the digest of the config slice and code its job depends on
    (cft.core.settings), so that a change of either reruns exactly that job and its dependants.
    """
    keys = ("domain", "model", "method", "task", "scale")
    return lambda wildcards: job_digest(
        config, stage, **{key: getattr(wildcards, key, None) for key in keys}
    )


def script_digest(name):
    """A rule's `script` param: its entry script's SHA-256. Snakemake's own check of a script
    compares modification times, which every fresh checkout renews (a clone in front of
    finished results replanned 37 jobs), so the profiles turn that check off (rerun-triggers
    without `code`) and the content is compared here."""
    return file_sha256(Path(workflow.basedir) / "scripts" / name)


def foreign_folder_guard(*templates):
    """An input function that adds no input: it stops the DAG when a rule's directory() output
    holds files this pipeline did not write (no cft.core.io marker). Snakemake deletes an output
    folder before it reruns the job (--forcerun, a changed setting), so the stage's own check
    (cft.core.io.check_output) would come too late to keep it."""

    def guard(wildcards):
        for template in templates:
            folder = template.format(**dict(wildcards.items()))
            try:
                check_output(folder, directory=True)
            except OutputError as error:
                raise OutputError(
                    f"{error}. Snakemake deletes a rule's output folder before it runs the "
                    f"job, so the workflow stops here: move {folder} away (or give its data "
                    "to the config, e.g. a domain's source.local_path)"
                ) from None
        return []

    return guard


def is_demo(domain):
    return domain_source(config, domain)["type"] == "demo"


def raw_corpus_dir(domain):
    """Folder holding a domain's raw source: generated (demo), downloaded, or given in config."""
    source = domain_source(config, domain)
    if source["type"] == "demo":
        return paths.demo_data_dir(domain)
    if source.get("local_path"):
        return str(resolve_path(source["local_path"], REPO_DIR))
    return paths.downloaded_corpus_dir(domain)


def corpus_input(wildcards):
    """The job that produces the raw source, if any (a configured local_path needs none)."""
    source = domain_source(config, wildcards.domain)
    if source["type"] == "demo":
        return [paths.demo_file(wildcards.domain, "documents.jsonl")]
    if source.get("local_path"):
        return []
    return [paths.downloaded_corpus_dir(wildcards.domain)]


def base_model_input(wildcards):
    """Hub models need their download manifest; packaged and local models need nothing."""
    if wildcards.model in hub_models(config):
        return [paths.model_manifest(wildcards.model)]
    return []


def base_model_mem_mb(wildcards, input, attempt):
    """A safetensors hub repo is linked file by file (little memory); .bin weights are loaded
    and re-saved, which takes about three times their size. Read off the download manifest
    (the job's input, present when the job is scheduled)."""
    if wildcards.model not in hub_models(config):
        return 8000 * attempt  # converting the packaged GGUF, or a local folder
    snapshot = Path(json.loads(Path(input[0]).read_text())["snapshot"])
    if any(snapshot.glob("*.safetensors")):
        return 4000 * attempt
    weights = sum(path.stat().st_size for path in snapshot.glob("*.bin"))
    return max(4000, 3 * weights // 2**20) * attempt


def autogen_gres():
    """SLURM --gres of the generation job: autogen.gpus (vLLM's tensor-parallel size, or the
    transformers backend on CUDA); '' for a CPU generator."""
    settings = config["autogen"]
    return gres_of(
        {"gpus_per_node": settings["gpus"], "gpu_model": settings["gpu_model"]}
    )


def stage_env(section, env_file):
    """The conda env of a stage that may run on vLLM. It is envs/vllm.yaml where the config
    section's backend is vllm (vLLM pins its own torch and transformers, see cft.core.vllm_env),
    else the given env file. Paths are relative to the rule files, as conda expects them.
    """
    return "../envs/vllm.yaml" if config[section]["backend"] == "vllm" else env_file


def tokenize_input(wildcards):
    inputs = {
        "corpus": paths.corpus_table(wildcards.domain),
        "model": paths.base_model_dir(wildcards.model),
    }
    if METHODS[wildcards.method].generated_prompts:
        inputs["autogen"] = paths.autogen_table(wildcards.domain)
    return inputs


def trained_methods():
    return grid.trained_methods(config)


def train_job_resources(wildcards):
    """training.resources for the job's model (built-in defaults < default < per model)."""
    return train_resources(config, wildcards.model)


def curve_job_resources(wildcards):
    """A knowledge-curve job's resources: one device of the train job's node."""
    return curve_resources(config, wildcards.model)


def curve_gres(wildcards):
    return gres_of(curve_job_resources(wildcards))


def evaluate_gres():
    """SLURM --gres of an evaluation job ('' on CPU)."""
    return gres_of({"gpus_per_node": config["evaluation"]["gpus"], "gpu_model": ""})


def train_gres(wildcards):
    """SLURM --gres for the GPUs of one node ('' for CPU jobs: no --gres)."""
    return gres_of(train_job_resources(wildcards))


# ---- evaluation --------------------------------------------------------------------------


def hub_eval_tasks():
    """Every configured task whose data comes from the hub (fetched by download_eval_task)."""
    tasks = [t for suite in config["evaluation"]["suites"].values() for t in suite]
    return sorted({t for t in tasks if not task_folders.is_local(t, TASK_DIRS)})


def eval_outputs():
    return sorted(
        {path for row in grid.eval_rows(config) for path in row_eval_outputs(*row)}
    )


def task_data_input(task, domain):
    """A task's data: the domain's corpus for a task that scores it (the held-out text), the
    files its YAML reads from disk, or the download manifest of its hub data."""
    return {"data": task_folders.task_inputs(task, domain, TASK_DIRS)}


def evaluate_input(wildcards):
    """The evaluated model, and the data of every task of its domain's suite."""
    method, seed = parse_run(wildcards.run)
    data = {
        path
        for task in grid.suite(config, wildcards.domain)
        for path in task_folders.task_inputs(task, wildcards.domain, TASK_DIRS)
    }
    return {
        "model": model_dir(wildcards.domain, wildcards.model, method, seed),
        "data": sorted(data),
    }


# ---- tables and named experiments ------------------------------------------------------


def table_outputs():
    outputs = []
    for domain in GRID["domains"]:
        if not config["evaluation"]["suites"].get(domain):
            continue
        for model in GRID["models"]:
            outputs += [
                table_file(domain, model, kind) for kind in ("md", "csv", "tex", "png")
            ]
            if trained_methods():
                outputs.append(paths.figure(domain, model, "loss", "png"))
    return outputs


def experiment_name(domain, model, method):
    """exp_{domain}_{model}_{method}, non-alphanumerics of the names turned into '_'."""
    clean = lambda name: re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    return f"exp_{clean(domain)}_{clean(model)}_{clean(method)}"


def row_eval_outputs(domain, model, method):
    """The eval folders of a table row: one per training run (its records, one per task)."""
    return grid.run_folders(grid.row_cells(config, domain, model, method))


# ---- knowledge-acquisition curves ---------------------------------------------------------


def curve_input(wildcards):
    inputs = {
        "tokenized": paths.tokenized_dir(
            wildcards.domain, wildcards.model, wildcards.method
        ),
        "base_model": paths.base_model_dir(wildcards.model),
    }
    task = config["evaluation"]["curves"]["tasks"].get(wildcards.domain)
    if task is not None:
        inputs |= task_data_input(task, wildcards.domain)
    return inputs


def curve_files(domain, model):
    return [
        curve_json(domain, model, method, SEEDS[0])
        for method in config["evaluation"]["curves"]["methods"]
        if method in trained_methods()
    ]


def curve_figures():
    return [
        paths.figure(domain, model, "knowledge", "png")
        for domain in GRID["domains"]
        if domain in config["evaluation"]["curves"]["tasks"]
        for model in GRID["models"]
    ]


# ---- synthetic experiment ----------------------------------------------------------------


def synthetic_gres():
    gpus = config["synthetic"]["gpus"]
    return gres_of({"gpus_per_node": gpus, "gpu_model": ""})


def synthetic_runs(wildcards):
    synthetic = config["synthetic"]
    return expand(
        paths.synthetic_run_dir("{scale}", "{task}", "{condition}", "{seed}"),
        scale=wildcards.scale,
        task=synthetic["tasks"],
        condition=synthetic["conditions"],
        seed=synthetic["seeds"],
    )


def synthetic_reference_input():
    """The authors' curves: none, the download rule's folder, or a configured local copy."""
    reference = config["synthetic"]["reference"]
    if reference is None:
        return []
    if reference == "download":
        return [paths.SYNTHETIC_REFERENCE_DIR]
    return [str(resolve_path(reference, REPO_DIR))]


def synthetic_outputs():
    synthetic = config["synthetic"]
    if not synthetic["enabled"]:
        return []
    return [paths.synthetic_summary(synthetic["scale"], "md")]


def all_outputs():
    outputs = [paths.base_model_dir(model) for model in ALL_MODELS]
    outputs += [
        path
        for domain in GRID["domains"]
        for path in (paths.corpus_table(domain), paths.corpus_stats(domain))
    ]
    outputs += [
        model_dir(domain, model, method, seed)
        for domain in GRID["domains"]
        for model in GRID["models"]
        for method in trained_methods()
        for seed in SEEDS
    ]
    outputs += expand(paths.export_file("{domain}"), domain=GRID["domains"])
    outputs += eval_outputs()
    outputs += table_outputs()
    outputs += synthetic_outputs()
    outputs += [
        paths.demo_file(domain, "questions.jsonl")
        for domain in GRID["domains"]
        if is_demo(domain)
    ]
    return outputs
