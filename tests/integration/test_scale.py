"""Defects that only show at size: the tokenized data's fingerprint against datasets'
re-chunking on save and load (>= 1,000 blocks per split), packing and training at that size."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from conftest import make_job

from cft.core.config import validate_config
from cft.core.fingerprints import dataset_fingerprint


def test_training_accepts_a_thousand_blocks_packed_by_the_stage(
    demo_config, packaged_tokenizer, tiny_model, tmp_path
):
    """The tokenize stage's own output at >= 1,000 blocks per split, saved and reloaded as the
    stages do, is accepted by training (before the fix, the re-chunked reload was refused).
    The paper's ``document`` mode; both modes write through the same writer, and the scale
    rehearsal below trains on each (at fewer blocks)."""
    mode = "document"
    from datasets import load_from_disk

    from cft.data.demo_data import generate
    from cft.packing import tokenize as packing
    from cft.training.run import train

    docs, _ = generate("biomed", 120, 3, seed=1)
    table = pd.DataFrame(
        {
            "doc_id": [d["doc_id"] for d in docs],
            "split": ["train" if i % 2 else "validation" for i in range(len(docs))],
            "text": [d["text"] for d in docs],
        }
    )
    corpus = tmp_path / "documents.parquet"
    table.to_parquet(corpus)
    config = validate_config(
        {
            **demo_config,
            "training": {**demo_config["training"], "max_seq_len": 16},
            "packing": {**demo_config["packing"], "mode": mode},
        }
    )
    out = tmp_path / "tokenized"
    record = packing.run(
        config,
        "biomed",
        "smollm2-135m-instruct",
        "cpt",
        corpus_table=corpus,
        tokenizer_dir=packaged_tokenizer,
        out_dir=out,
    )
    for split in ("train", "validation"):
        assert record["splits"][split]["blocks"] >= 1000
    assert dataset_fingerprint(load_from_disk(str(out))) == record["fingerprint"]
    assert json.loads((out / "stats.json").read_text())["fingerprint"] == record["fingerprint"]

    micro_batches = {"default": {**demo_config["training"]["resources"]["default"]}}
    micro_batches["default"]["per_device_batch_size"] = 256  # a few steps, not hundreds
    job = make_job(
        demo_config,
        tmp_path,
        tiny_model,
        out,
        max_seq_len=16,
        global_batch_size=512,
        epochs=1,
        eval_at_end=False,
        resources=micro_batches,
    )
    metrics = train(job)
    assert metrics["optimizer_steps"] >= 2
    assert Path(job.out_dir, "train_metrics.json").is_file()


def test_scale_rehearsal_runs_every_stage_on_hub_shaped_corpora(tmp_path):
    """bench/scale_rehearsal.py at its small size: corpora laid out like the hub repos (one
    textbook-sized document among them), every stage as its own process on the paper recipe
    (4,096-token sequences), training on the stage's own output in 1 process and 2-process
    FSDP2, autogen on the longest document, evaluation; and no per-document step whose cost
    per character grows with the document's length."""
    import subprocess
    import sys

    from conftest import REPO

    out = tmp_path / "scale"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scale_rehearsal.py"),
         "--fractions", "0.0003", "--max-steps", "1", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "rehearsal.json").read_text())
    (size,) = report["sizes"]
    stages = {m["stage"]: m for m in size["stages"]}
    assert set(stages) == {
        "corpus_biomed",
        "corpus_finance",
        *(f"packing_{mode}_{d}" for mode in ("document", "packed") for d in ("biomed", "finance")),
        "training_1p",
        "training_2p",
        "autogen_biomed_subset",
        "evaluation",
    }
    corpora = size["corpora"]
    assert corpora["biomed"]["textbooks"] >= 1 and corpora["finance"]["documents"] >= 8
    assert stages["corpus_biomed"]["documents"] == corpora["biomed"]["documents"]
    for mode in ("document", "packed"):
        for domain in ("biomed", "finance"):
            packed = stages[f"packing_{mode}_{domain}"]
            assert packed["tokens"] > 0 and packed["blocks"]["train"] > 0
    assert (
        stages["packing_document_biomed"]["fingerprint"]
        != stages["packing_packed_biomed"]["fingerprint"]
    )
    # training accepted the stage's own blocks, in one process and in 2-process FSDP2
    assert stages["training_1p"]["parallelism"] == "single"
    assert stages["training_1p"]["mode"] == "packed"
    assert stages["training_2p"]["parallelism"] == "fsdp2"
    assert stages["training_2p"]["mode"] == "document"
    assert stages["training_1p"]["optimizer_steps"] == stages["training_2p"]["optimizer_steps"] == 1
    assert all(
        m["peak_pss_mb"] > 0 and m["peak_anon_mb"] > 0 and m["wall_s"] > 0 for m in stages.values()
    )
    assert (out / "rehearsal.md").read_text().count("| training_2p |") == 1
    # Per character, no step may cost much more on a 1M-character document than on a 10k one:
    # a step quadratic in the length would be ~100 times dearer (the bound leaves room for the
    # noise of a shared CI machine).
    sweep = report["length_sweep"]
    assert all(growth < 4 for growth in sweep["growth_1m_over_10k"].values()), sweep
    assert sweep["copy_check_ms_per_30k_document"] < 5  # the bound (difflib: ~170 ms)
