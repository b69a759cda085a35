"""The hub code against local files laid out like the hub: a fake hub serving a repo folder
(the network edge is the only thing replaced), and a real HF cache layout read offline."""

from __future__ import annotations

import json

import pytest
from miniature.build import hub_cache
from unit.test_download import hub_model_config, run_cli, tiny_model_folder

from cft.core import fingerprints


@pytest.mark.parametrize("safetensors", [True, False], ids=["safetensors", "pytorch-bin"])
def test_base_model_from_hf_cache_offline(tmp_path, paper_config, safetensors):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tiny_model_folder(tmp_path / "tiny", safetensors=safetensors)
    hub_cache(tmp_path / "hf_home", "acme/tiny-chat", tmp_path / "tiny")
    config = hub_model_config(tmp_path, paper_config)
    out = tmp_path / "base_models" / "tiny-chat"
    env = {"HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    result = run_cli(
        "cft.data.base_model", "--config", str(config), "--model", "tiny-chat",
        "--out-dir", str(out), env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (out / "model.safetensors").is_file()
    assert not list(out.glob("*.bin"))
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "tiny")
    loaded = AutoModelForCausalLM.from_pretrained(out)
    for (name, a), (_, b) in zip(
        reference.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert (a == b).all(), name
    assert AutoTokenizer.from_pretrained(out).chat_template
    prov = json.loads((out / fingerprints.PROVENANCE_FILE).read_text())
    assert prov["has_chat_template"] is True
    assert prov["fingerprint"] == fingerprints.folder_fingerprint(out)


def test_missing_hub_model_error_says_how_to_provide_it(tmp_path, paper_config):
    config = hub_model_config(tmp_path, paper_config)
    env = {"HF_HOME": str(tmp_path / "empty_home"), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "base_models" / "tiny-chat"
    result = run_cli(
        "cft.data.base_model", "--config", str(config), "--model", "tiny-chat",
        "--out-dir", str(out), env=env,
    )  # fmt: skip
    assert result.returncode != 0
    message = result.stderr
    assert "'acme/tiny-chat'" in message
    assert "snakemake download_models" in message
    assert "models.tiny-chat.local_path" in message
    assert not out.exists()

    # the download target itself, with the hub unreachable, says the same
    manifest = tmp_path / "resources" / "models" / "tiny-chat.json"
    result = run_cli(
        "cft.data.download", "model", "--config", str(config), "--model", "tiny-chat",
        "--manifest", str(manifest), env=env,
    )  # fmt: skip
    assert result.returncode != 0
    assert "snakemake download_models" in result.stderr and not manifest.exists()
