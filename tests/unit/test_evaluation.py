"""Evaluation: the shipped lm-eval task YAMLs, the FinBen tasks end to end on local copies laid
out like the hub (weighted F1 equal to scikit-learn's), the result JSON, and the errors for
unknown tasks and for data missing offline."""

from __future__ import annotations

from conftest import REPO

from cft.core.config import validate_config


def test_local_data_named_in_an_included_template_are_found(tmp_path):
    from cft.evaluation.task_folders import local_data

    (tmp_path / "_template_yaml").write_text("dataset_path: results/sets/x\noutput_type: x\n")
    (tmp_path / "local.yaml").write_text("include: _template_yaml\ntask: local\n")
    (tmp_path / "hub.yaml").write_text("include: _template_yaml\ntask: hub\ndataset_path: a/b\n")
    hooks = "include: _template_yaml\ntask: hooks\nprocess_results: !function utils.f\n"
    (tmp_path / "hooks.yaml").write_text(hooks)
    assert local_data("local", (tmp_path,)) == ["results/sets/x"]
    assert local_data("hooks", (tmp_path,)) == ["results/sets/x"]  # its hook is not imported
    assert local_data("hub", (tmp_path,)) == []  # the task's own dataset_path wins


def test_fiqasa_copy_has_the_hubs_valid_split(finben_copies):
    from datasets import load_dataset

    data = load_dataset("results/demo_data/finben/flare-fiqasa")
    assert set(data) == {"train", "valid", "test"}
    assert set(data["test"].column_names) == {"id", "query", "answer", "text", "choices", "gold"}


def test_bf16_is_chosen_only_where_its_matmuls_measure_faster():
    from cft.core.devices import BF16_MIN_SPEEDUP, bf16_verdict

    # the figures of two 2-core CPUs with AVX512-bf16 (docs/benchmarks.md): a Zen 4 EPYC, and
    # a Xeon whose hypervisor hides AMX, where bf16 is slower than fp32
    fast, why = bf16_verdict(["avx512_bf16"], 0.42e12, 0.19e12)
    assert fast and "2.21x" in why and "avx512_bf16" in why
    slow, why = bf16_verdict(["avx512_bf16"], 0.167e12, 0.308e12)
    assert not slow and "0.54x" in why and "0.167 vs 0.308 TFLOP/s" in why
    # a small gain is not worth a choice that could flip with the machine's noise
    assert not bf16_verdict(["amx"], 0.9 * BF16_MIN_SPEEDUP, 1.0)[0]
    assert bf16_verdict(["amx"], BF16_MIN_SPEEDUP, 1.0)[0]


def test_native_dtype_is_bfloat16_only_where_the_hardware_has_it(demo_config):
    from cft.core.devices import native_bf16
    from cft.evaluation.harness import model_arguments, placement

    demo_config["evaluation"]["dtype"] = "native"
    evaluation = validate_config(demo_config)["evaluation"]
    native, reason = native_bf16(cuda=False)
    expected = "bfloat16" if native else "float32"
    where = placement(evaluation, "the test")
    assert where.dtype == expected and where.device == "cpu"
    assert model_arguments(REPO, evaluation, where)["dtype"] == expected
    assert reason.startswith("cpu has")
