"""The CFT tuning-set export in Gemini's supervised-tuning format."""

from __future__ import annotations

import json

import pandas as pd

from cft.core.config import validate_config
from cft.packing.export import chunk_text, run


def test_chunks_cover_the_text_at_boundaries():
    text = " ".join(f"Sentence number {i} ends here." for i in range(200))
    chunks = list(chunk_text(text, 300))
    assert all(len(c) <= 300 for c in chunks)
    assert all(c.endswith(".") for c in chunks)
    assert " ".join(chunks) == text


def test_gemini_jsonl(tmp_path, demo_config):
    demo_config["export"] = {"gemini_chunk_chars": 200}
    validate_config(demo_config)
    corpus = tmp_path / "documents.parquet"
    pd.DataFrame(
        {
            "doc_id": ["a", "b"],
            "split": ["train", "validation"],
            "text": ["The liver stores glycogen. " * 20, "Held out."],
        }
    ).to_parquet(corpus)
    out = tmp_path / "gemini_cft.jsonl"
    record = run(demo_config, "biomed", corpus, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == record["examples"] >= 3
    for row in rows:
        user, model = row["contents"]
        assert user["role"] == "user" and model["role"] == "model"
        assert model["parts"][0]["text"].startswith("The liver")
        assert len(model["parts"][0]["text"]) <= 200
    assert all("Held out." not in r["contents"][1]["parts"][0]["text"] for r in rows)
    again = tmp_path / "again.jsonl"
    run(demo_config, "biomed", corpus, again)
    assert again.read_text() == out.read_text()
