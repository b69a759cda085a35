"""What a GPU cluster needs from the workflow and that a CPU machine can still check: the
resources the paper config plans, and jobs that fail loudly instead of falling back to CPU."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from conftest import REPO, planned_resources

from cft.core.config import load_config, validate_config
from cft.core.devices import DeviceError


def test_paper_config_generates_prompts_with_vllm_on_a_gpu():
    config = load_config(REPO / "config" / "paper.yaml")
    assert config["autogen"]["backend"] == "vllm" and config["autogen"]["gpus"] >= 1
    jobs = planned_resources("autogen", "--configfile", "config/paper.yaml")
    assert len(jobs) == 2  # one per domain
    for resources in jobs.values():
        assert resources["gres"] == "gpu:a100:1" and resources["tasks_per_gpu"] == "0"
        assert int(resources["mem_mb"]) >= 64000 and int(resources["cpus_per_task"]) >= 8


def test_demo_generator_stays_on_cpu():
    jobs = planned_resources("autogen")
    assert jobs and all(resources["gres"] == "" for resources in jobs.values())


def test_train_memory_is_a_nodes_memory_on_every_attempt():
    """Retries scale runtime, not memory: 480 GB x 2 or x 3 per node cannot be scheduled."""
    rule = (REPO / "workflow" / "rules" / "training.smk").read_text()
    mem = re.search(r"mem_mb=(.*?)\n\s+runtime=", rule, re.S).group(1)
    assert "attempt" not in mem
    jobs = planned_resources("train", "--configfile", "config/paper.yaml")
    assert {resources["mem_mb"] for resources in jobs.values()} == {"480000"}


def test_evaluation_on_a_gpu_job_without_cuda_fails_loudly(demo_config, tiny_model):
    from cft.evaluation.harness import evaluate

    validate_config(demo_config)
    demo_config["evaluation"]["gpus"] = 1
    with pytest.raises(DeviceError, match=r"evaluation of .* on demo_knowledge_biomed.*gpus = 1"):
        evaluate(demo_config, "demo_knowledge_biomed", tiny_model)


def test_generation_on_a_gpu_job_without_cuda_fails_loudly(demo_config, tiny_model):
    from cft.packing.generators import TransformersGenerator

    settings = {**validate_config(demo_config)["autogen"], "gpus": 1}
    with pytest.raises(DeviceError, match=r"autogen with .*autogen.gpus = 1"):
        TransformersGenerator(tiny_model, settings)


def test_training_on_a_gpu_job_without_cuda_fails_loudly(demo_config, tmp_path, tiny_model):
    from conftest import make_job

    from cft.training.run import train

    job = make_job(demo_config, tmp_path, tiny_model, tmp_path / "unused")
    job = replace(job, resources={**job.resources, "gpus_per_node": 8})
    with pytest.raises(DeviceError, match=r"train job biomed/.*gpus_per_node = 8"):
        train(job)


def test_a_knowledge_curve_asks_for_the_one_gpu_it_trains_and_scores_on(tmp_path):
    """The curve's scorer is a callback in its one training process: the job asks for one GPU
    of the train job's node (it asked for all eight and used one, or failed the world check)."""
    curves = tmp_path / "curves.yaml"  # config/paper.yaml with curves for one task
    curves.write_text("evaluation:\n  curves:\n    tasks: {biomed: mmlu_anatomy}\n")
    jobs = planned_resources(
        "knowledge_curve", "knowledge_curves",
        "--configfile", "config/paper.yaml", str(curves),
    )  # fmt: skip
    assert jobs and {resources["gres"] for resources in jobs.values()} == {"gpu:a100:1"}
