"""Tokenization and packing on the real SmolLM2 tokenizer: masking, block lengths, EOS, prompt
sampling, token accounting, determinism, chat format and bad inputs."""

from __future__ import annotations

from unit.test_packing import run_stage


def test_same_config_gives_identical_bytes(config, corpus_table, packaged_tokenizer, tmp_path):
    a = run_stage(config, "negcft", corpus_table, packaged_tokenizer, tmp_path / "a", threads=2)
    b = run_stage(config, "negcft", corpus_table, packaged_tokenizer, tmp_path / "b", threads=1)
    assert a["fingerprint"] == b["fingerprint"]
    for path in sorted((tmp_path / "a").rglob("*.arrow")):
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert path.read_bytes() == twin.read_bytes()
    config["seed"] += 1
    c = run_stage(config, "negcft", corpus_table, packaged_tokenizer, tmp_path / "c")
    assert c["fingerprint"] != a["fingerprint"]
