"""Loading and validating the workflow config.

Two layers: the JSON Schema in workflow/schemas/config.schema.yaml (checked with
``snakemake.utils.validate``, which also fills in defaults), then cross-reference and path
checks that a schema cannot express. Both raise :class:`ConfigError` with a message that
names the key, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import functools
import math
import os
from pathlib import Path

import yaml

from cft.core.errors import CftError
from cft.core.io import non_regular_kind
from cft.core.methods import SYNTHETIC_CONDITIONS, SYNTHETIC_TASKS
from cft.core.yaml_files import load_yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
PROMPT_SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "prompts.schema.yaml"


class ConfigError(CftError, ValueError):
    """The config is invalid; the message says where and how to fix it."""


def read_config_file(path: str | os.PathLike):
    """A config file's YAML (a key written twice is an error naming its lines)."""
    path = Path(path)
    kind = non_regular_kind(path)
    if kind is not None:
        raise ConfigError(f"config file {path}: {kind}, not a readable file")
    try:
        return load_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None


def typed_overrides(overrides) -> dict:
    """``snakemake --config`` values with their nested leaves typed as a config file types them.

    Snakemake parses a top-level value as int, float or bool, but reads a nested one
    (``training={learning_rate: 1.0e-4}``) with YAML's BaseLoader, which keeps every leaf a
    string, so no nested number could be overridden. Each such leaf is read again as YAML."""

    def typed(value, nested: bool):
        if isinstance(value, dict):
            return {key: typed(item, True) for key, item in value.items()}
        if isinstance(value, list):
            return [typed(item, True) for item in value]
        if nested and isinstance(value, str):
            try:
                return load_yaml(value)
            except yaml.YAMLError:
                return value
        return value

    return {key: typed(value, False) for key, value in dict(overrides).items()}


def load_config(path: str | os.PathLike) -> dict:
    """Read a YAML config file and validate it (defaults filled in)."""
    config = read_config_file(path)
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    validate_config(config, source=str(path))
    return config


def validate_config(config: dict, *, source: str = "config", base_dir: Path | None = None) -> dict:
    """Validate ``config`` in place (defaults are filled in) and return it."""
    _check_schema(config, source)
    _check_numbers(config, source)
    _check_references(config, source, base_dir or REPO_ROOT)
    return config


def schema_node(node: dict, schema: dict) -> dict:
    """A schema node with its ``$ref`` followed (the node's own keys win)."""
    while "$ref" in node:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _check_numbers(config: dict, source: str) -> None:
    """What JSON Schema lets through: NaN and infinities pass every bound (each comparison is
    false), and 4.0 passes as an integer (to fail later, e.g. in a path ``seed4.0``)."""
    schema = load_yaml(SCHEMA_PATH.read_text())

    def walk(value, node: dict, path: tuple) -> None:
        node = schema_node(node, schema)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source}: '{_key(path)}' = {value}: expected a finite number")
        kinds = node.get("type", [])
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if isinstance(value, float) and "integer" in kinds and "number" not in kinds:
            raise ConfigError(
                f"{source}: '{_key(path)}' = {value!r}: expected an integer, without a decimal "
                f"point"
            )
        if isinstance(value, dict):
            extra = node.get("additionalProperties")
            for key, child in value.items():
                child_node = node.get("properties", {}).get(key)
                if child_node is None:
                    child_node = extra if isinstance(extra, dict) else {}
                walk(child, child_node, (*path, key))
        elif isinstance(value, list):
            items = node.get("items")
            for index, child in enumerate(value):
                walk(child, items if isinstance(items, dict) else {}, (*path, index))

    walk(config, schema, ())


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _check_schema(config: dict, source: str, schema: Path = SCHEMA_PATH) -> None:
    import jsonschema
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, str(schema))
    except WorkflowError as err:
        # validate() raises WorkflowError from inside `except ValidationError`.
        cause = err.__cause__ or err.__context__
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        raise ConfigError(f"{source}: {_describe(cause)}") from None


def _describe(error) -> str:
    """One line: key, bad value, what is allowed."""
    key = _key(error.absolute_path)
    validator = error.validator
    if validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return (
            f"unknown key(s) {', '.join(repr(k) for k in extra)} under '{key}'; "
            f"allowed keys: {', '.join(allowed)}"
        )
    if validator == "required":
        return f"'{key}': {error.message}"
    if validator in ("enum", "const"):
        allowed = error.validator_value if validator == "enum" else [error.validator_value]
        return f"'{key}' = {error.instance!r} is not allowed; expected one of {list(allowed)}"
    if validator == "propertyNames":
        return f"'{key}': name {error.instance!r} is not allowed: {error.message}"
    description = error.schema.get("description")
    hint = f" ({description})" if description else ""
    return f"'{key}' = {error.instance!r}: {error.message}{hint}"


def _check_references(config: dict, source: str, base_dir: Path) -> None:
    models, domains = config["models"], config["domains"]
    for kind, known in (("models", models), ("domains", domains)):
        for name in config["grid"][kind]:
            if name not in known:
                raise ConfigError(
                    f"{source}: 'grid.{kind}' names {name!r}, which is not defined under "
                    f"'{kind}'; defined: {sorted(known)}"
                )
    for name, baseline in config.get("baselines", {}).items():
        for field, known in (("model", models), ("domain", domains)):
            if baseline[field] not in known:
                raise ConfigError(
                    f"{source}: 'baselines.{name}.{field}' = {baseline[field]!r} is not defined "
                    f"under '{field}s'; defined: {sorted(known)}"
                )
    for name, model in models.items():
        for field in ("path", "local_path"):
            _check_path(model.get(field), f"models.{name}.{field}", source, base_dir)
    for name, domain in domains.items():
        _check_path(
            domain["source"].get("local_path"),
            f"domains.{name}.source.local_path",
            source,
            base_dir,
        )
    for number, folder in enumerate(config["evaluation"]["task_paths"]):
        key = f"evaluation.task_paths.{number}"
        _check_path(folder, key, source, base_dir)
        if not resolve_path(folder, base_dir).is_dir():
            raise ConfigError(f"{source}: '{key}' = {folder!r} is not a folder of task YAMLs")
    for name in config["training"]["resources"]:
        if name != "default" and name not in models:
            raise ConfigError(
                f"{source}: 'training.resources.{name}' names no model; expected 'default' or "
                f"one of {sorted(models)}"
            )
    for name in config["evaluation"]["suites"]:
        if name not in domains:
            raise ConfigError(
                f"{source}: 'evaluation.suites.{name}' names no domain; defined: {sorted(domains)}"
            )
    synthetic = config["synthetic"]
    if synthetic["enabled"] and synthetic["scale"] not in synthetic["scales"]:
        raise ConfigError(
            f"{source}: 'synthetic.scale' = {synthetic['scale']!r} is not defined under "
            f"'synthetic.scales'; defined: {sorted(synthetic['scales'])}"
        )
    per_task = {"synthetic.x_covariance": synthetic["x_covariance"]} | {
        f"synthetic.scales.{name}.task_finetune_steps": scale.get("task_finetune_steps", {})
        for name, scale in synthetic["scales"].items()
    }
    for key, mapping in per_task.items():
        unknown = sorted(set(mapping) - set(SYNTHETIC_TASKS))
        if unknown:
            raise ConfigError(
                f"{source}: '{key}' names {unknown}; expected tasks of {list(SYNTHETIC_TASKS)}"
            )
    for key, known in (("tasks", SYNTHETIC_TASKS), ("conditions", SYNTHETIC_CONDITIONS)):
        unknown = [name for name in synthetic[key] if name not in known]
        if unknown:
            raise ConfigError(
                f"{source}: 'synthetic.{key}' names {unknown}; expected some of {list(known)}"
            )
    if synthetic["reference"] not in (None, "download"):
        _check_path(synthetic["reference"], "synthetic.reference", source, base_dir)
    training = config["training"]
    if training["master_weights"] == "bf16" and training["precision"] != "bf16":
        raise ConfigError(
            f"{source}: 'training.master_weights' = 'bf16' needs training.precision 'bf16' "
            f"(it is {training['precision']!r}); pure bf16 keeps the weights in the compute dtype"
        )
    if config["packing"]["mode"] == "document" and config["packing"]["prompt_format"] != "plain":
        raise ConfigError(
            f"{source}: 'packing.mode' = 'document' needs packing.prompt_format 'plain' (it is "
            f"{config['packing']['prompt_format']!r}): a chunk has no place for the chat "
            f"template's closing tokens"
        )
    generator = config["autogen"]["model"]
    if generator is not None and generator not in models:
        raise ConfigError(
            f"{source}: 'autogen.model' = {generator!r} is not defined under 'models'; "
            f"defined: {sorted(models)}"
        )
    for kind, path in config["prompts"].items():
        _check_path(path, f"prompts.{kind}", source, base_dir)
        load_prompt_file(resolve_path(path, base_dir), expected_kind=kind)


def resolve_path(value: str | os.PathLike, base_dir: Path = REPO_ROOT) -> Path:
    """Relative paths in config are relative to the workflow's folder (the repo root)."""
    return Path(value) if Path(value).is_absolute() else base_dir / value


def load_prompt_file(path: Path, expected_kind: str | None = None) -> dict:
    """Read and check a prompt file (config/prompts/*.yaml) against its schema."""
    kind = non_regular_kind(Path(path))
    if kind is not None:
        raise ConfigError(f"prompt file {path}: {kind}, not a readable file")
    try:
        data = load_yaml(Path(path).read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'kind' and 'prompts'")
    _check_schema(data, str(path), PROMPT_SCHEMA_PATH)
    if expected_kind is not None and data["kind"] != expected_kind:
        raise ConfigError(
            f"{path}: 'kind' = {data['kind']!r}, but it is configured as prompts.{expected_kind}"
        )
    names = [p["name"] for p in data.get("prompts", [])]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{path}: prompt names must be unique; repeated: {duplicates}")
    return data


def _check_path(value: str | None, key: str, source: str, base_dir: Path) -> None:
    if value is None:
        return
    path = resolve_path(value, base_dir)
    if not path.exists():
        raise ConfigError(f"{source}: '{key}' = {value!r}: no such file or folder ({path})")


# ---- accessors used by the rules and the stages --------------------------------------------


def autogen_model(config: dict) -> str:
    """The model that writes TextAdaptCFT prompts."""
    return config["autogen"]["model"] or config["grid"]["models"][0]


def model_setting(config: dict, model: str, key: str):
    """``models.<model>.<key>``, or the default its schema definition gives (validation fills
    in no default inside the per-source model schemas it picks conditionally). A model the
    config does not define (a folder evaluated under a name of its own) takes the defaults."""
    entry = config["models"].get(model, {})
    if key in entry:
        return entry[key]
    return copy.deepcopy(_schema_defs()[key]["default"])


@functools.cache
def _schema_defs() -> dict:
    return load_yaml(SCHEMA_PATH.read_text())["$defs"]


def training_seeds(config: dict) -> list[int]:
    """The seeds each trained method is run with: training.seeds, or the top-level seed."""
    return list(config["training"].get("seeds") or [config["seed"]])


def domain_source(config: dict, domain: str) -> dict:
    return config["domains"][domain]["source"]


def evaluated_models(config: dict) -> list[str]:
    """Every model that needs a base-model folder: the grid's and the baselines'."""
    names = list(config["grid"]["models"])
    names += [b["model"] for b in config.get("baselines", {}).values()]
    return list(dict.fromkeys(names))


def hub_models(config: dict) -> list[str]:
    """Models fetched from the hub (not those given a local_path)."""
    return [
        name
        for name in evaluated_models(config)
        if config["models"][name]["source"] == "hub" and not config["models"][name]["local_path"]
    ]


def downloaded_domains(config: dict) -> list[str]:
    """Grid domains whose corpus comes from the hub (not demo, not a local_path)."""
    return [
        name
        for name in config["grid"]["domains"]
        if domain_source(config, name)["type"] != "demo"
        and not domain_source(config, name).get("local_path")
    ]
