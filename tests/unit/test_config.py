"""Config validation: the shipped configs pass, bad ones stop with a message that names the key,
the bad value and what is allowed."""

from __future__ import annotations

import pytest
from conftest import REPO

from cft.core.config import (
    ConfigError,
    load_config,
    model_setting,
    read_config_file,
    validate_config,
)


def _set(config, dotted, value):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()


# (description, key to change, new value, fragments the message must contain)
BAD_CONFIGS = [
    ("unknown top-level key", "epochz", 3, ["'epochz'", "allowed keys", "grid"]),
    ("unknown nested key", "corpus.min_char", 5, ["'min_char'", "under 'corpus'", "min_chars"]),
    ("wrong type", "corpus.min_chars", "many", ["corpus.min_chars", "'many'", "integer"]),
    ("fraction out of range", "corpus.validation_fraction", 1.5, ["validation_fraction", "1.5"]),
    (
        "unknown method",
        "grid.methods",
        ["cpt", "sft"],
        ["grid.methods.1", "'sft'", "chat", "negcft", "autocft"],
    ),
    ("unknown model in grid", "grid.models", ["llama-3"], ["grid.models", "'llama-3'", "defined"]),
    ("unknown domain in grid", "grid.domains", ["law"], ["grid.domains", "'law'", "biomed"]),
    (
        "unknown model source",
        "models.smollm2-135m-instruct.source",
        "ollama",
        ["models.smollm2-135m-instruct.source", "'ollama'", "packaged", "hub", "local"],
    ),
    (
        "unknown corpus source type",
        "domains.biomed.source.type",
        "pubmed",
        ["domains.biomed.source.type", "'pubmed'", "openmedtext", "financial_news"],
    ),
    (
        "missing required key",
        "domains.finance.source.generator",
        _DELETE,
        ["domains.finance.source", "'generator' is a required property"],
    ),
    (
        "bad on_invalid_utf8",
        "corpus.on_invalid_utf8",
        "ignore",
        ["corpus.on_invalid_utf8", "'ignore'", "error", "skip"],
    ),
    (
        "bad dtype",
        "models.smollm2-135m-instruct.dtype",
        "int8",
        ["models.smollm2-135m-instruct.dtype", "'int8'", "bfloat16"],
    ),
    ("seed as string", "seed", "42", ["'seed'", "'42'", "integer"]),
    (
        "local model path that does not exist",
        "models.smollm2-135m-instruct",
        {"source": "local", "path": "/nonexistent/model"},
        ["models.smollm2-135m-instruct.path", "/nonexistent/model", "no such file"],
    ),
    (
        "corpus local_path that does not exist",
        "domains.biomed.source",
        {"type": "openmedtext", "local_path": "/nonexistent/openmedtext"},
        ["domains.biomed.source.local_path", "/nonexistent/openmedtext", "no such file"],
    ),
    (
        "bad model name",
        "grid.models",
        ["Llama 2"],
        ["grid.models.0", "'Llama 2'", "does not match"],
    ),
]


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name):
    config = load_config(REPO / "config" / name)
    # snakemake.utils.validate filled in the schema's defaults
    assert "validation_fraction" in config["corpus"]
    assert "max_seq_len" in config["training"]


def test_defaults_are_filled_in(demo_config):
    del demo_config["corpus"]
    validate_config(demo_config)
    assert demo_config["corpus"] == {
        "min_chars": 200,
        "max_chars": None,
        "validation_fraction": 0.01,
        "on_invalid_utf8": "error",
    }


def test_paper_config_carries_the_paper_recipe(paper_config):
    validate_config(paper_config)
    training = paper_config["training"]
    assert training["global_batch_size"] == 128
    assert training["learning_rate"] == 2e-5
    assert training["adam_betas"] == [0.9, 0.95]
    assert training["max_seq_len"] == 4096
    assert paper_config["grid"]["methods"] == ["chat", "cpt", "cft", "negcft", "autocft"]


@pytest.mark.parametrize(
    ("key", "value", "fragments"),
    [case[1:] for case in BAD_CONFIGS],
    ids=[case[0] for case in BAD_CONFIGS],
)
def test_bad_config_is_rejected_with_a_clear_message(demo_config, key, value, fragments):
    _set(demo_config, key, value)
    with pytest.raises(ConfigError) as err:
        validate_config(demo_config)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"


def test_unknown_baseline_model(paper_config):
    paper_config["baselines"]["adaptllm-medicine-chat"]["model"] = "medalpaca"
    with pytest.raises(ConfigError, match=r"baselines\.adaptllm-medicine-chat\.model.*'medalpaca'"):
        validate_config(paper_config)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (("training", "epochs"), float("nan"), r"'training.epochs' = nan: expected a finite"),
        (("corpus", "validation_fraction"), float("nan"), r"'corpus.validation_fraction' = nan"),
        (("training", "learning_rate"), float("inf"), r"'training.learning_rate' = inf"),
        (("seed",), 1234.0, r"'seed' = 1234.0: expected an integer"),
        (("training", "save_steps"), 4.0, r"'training.save_steps' = 4.0: expected an integer"),
    ],
)
def test_numbers_json_schema_lets_through_are_refused(demo_config, key, value, message):
    """NaN passes every bound of JSON Schema, and 4.0 passes as an integer."""
    section = demo_config
    for name in key[:-1]:
        section = section[name]
    section[key[-1]] = value
    with pytest.raises(ConfigError, match=message):
        validate_config(demo_config)


def test_a_key_written_twice_is_refused_with_its_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("seed: 1\ntraining:\n  epochs: 1\n  epochs: 2\n")
    with pytest.raises(ConfigError, match=r"key 'epochs' is written twice .*first on line 3"):
        load_config(path)
    merged = tmp_path / "merged.yaml"  # a merge key's values may be overridden: not twice
    merged.write_text("a: &base {x: 1, y: 2}\nb: {<<: *base, x: 3}\n")
    assert read_config_file(merged)["b"] == {"x": 3, "y": 2}


def test_a_key_written_twice_in_a_prompt_file_is_refused_with_its_lines(tmp_path):
    """Prompt files go through the same strict reader as config files (before, the last value
    silently won)."""
    from cft.core.config import load_prompt_file

    path = tmp_path / "cft.yaml"
    path.write_text(
        "kind: cft\nprompts:\n  - name: a\n    text: First text of the prompt.\n"
        "    text: Second text of the prompt.\n"
    )
    with pytest.raises(ConfigError, match=rf"{path}: .*key 'text' is written twice .*line 4"):
        load_prompt_file(path, "cft")


def test_every_yaml_reader_of_the_package_is_the_strict_one():
    """One YAML policy: no module of the package reads YAML but through cft.core.yaml_files."""
    import re

    from cft.core.settings import PACKAGE_DIR

    readers = re.compile(r"yaml\.(safe_load|load|full_load|unsafe_load)\(")
    found = [
        f"{path.relative_to(PACKAGE_DIR)}:{n}"
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if readers.search(line) and path.name != "yaml_files.py"
    ]
    assert found == []


def test_nested_command_line_values_are_typed_as_in_a_config_file():
    from cft.core.config import typed_overrides

    # what snakemake's parse_config hands over for
    # seed=7 training="{learning_rate: 1.0e-4, bf16: true, seeds: [1, 2]}" note=x
    parsed = {
        "seed": 7,
        "training": {"learning_rate": "1.0e-4", "bf16": "true", "seeds": ["1", "2"]},
        "note": "x",
        "domains": {"biomed": {"source": {"name": "open_med_text"}}},
    }
    assert typed_overrides(parsed) == {
        "seed": 7,
        "training": {"learning_rate": 1.0e-4, "bf16": True, "seeds": [1, 2]},
        "note": "x",
        "domains": {"biomed": {"source": {"name": "open_med_text"}}},
    }


def test_a_model_setting_falls_back_to_its_schema_default(demo_config):
    """Validation fills no default inside the per-source model schemas: model_setting reads the
    schema's, for a defined model without the key and for a folder evaluated by its own name."""
    config = validate_config(demo_config)
    assert "end_of_text" not in config["models"]["smollm2-135m-instruct"]
    assert model_setting(config, "smollm2-135m-instruct", "end_of_text") is None
    assert model_setting(config, "a-folder", "chat_template_kwargs") == {}
    config["models"]["smollm2-135m-instruct"]["chat_template_kwargs"] = {"enable_thinking": False}
    assert model_setting(config, "smollm2-135m-instruct", "chat_template_kwargs") == {
        "enable_thinking": False
    }
    # the default is a copy: editing it changes nothing for the next reader
    model_setting(config, "a-folder", "chat_template_kwargs")["x"] = 1
    assert model_setting(config, "a-folder", "chat_template_kwargs") == {}
