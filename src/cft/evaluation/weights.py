"""A model folder's weights read once for evaluation: every file's bytes hashed into the folder's
fingerprint (checked against the one recorded when the folder was written), parsed and checked
for NaN and infinity, so a changed, truncated or diverged model is refused by name before it
scores as if it knew nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cft.core.fingerprints import ModelFilesError, verified_fingerprint


def checked_tensors(path: Path, data: bytes) -> dict:
    """The tensors of one safetensors file from its bytes; :class:`ModelFilesError` naming the
    file (and tensor) if it is truncated or corrupt, or holds NaN or infinity."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
    except SafetensorError as err:
        raise ModelFilesError(
            f"{path}: not a complete safetensors file ({err}); was it truncated? rerun the "
            f"stage that wrote it"
        ) from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelFilesError(
                f"{path}: tensor {name!r} holds NaN or infinite values; the model is broken "
                f"(did training diverge?), rerun the stage that wrote it"
            )
    return tensors


def weight_files(folder: Path) -> list[Path]:
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ModelFilesError(f"{folder}: no .safetensors weights (expected a model folder)")
    return files


def read_checked_weights(folder: Path, *, keep: bool) -> tuple[dict, str]:
    """Read every weight file of ``folder`` once: its bytes hashed into the folder's
    fingerprint, which must equal the recorded one, and its tensors checked
    (:func:`checked_tensors`). Returns (the tensors if ``keep``, else {}; the fingerprint)."""
    state, digests = {}, {}
    for path in weight_files(folder):
        data = path.read_bytes()
        tensors = checked_tensors(path, data)
        if keep:
            state.update(tensors)
        digests[path.name] = hashlib.sha256(data).hexdigest()
        del data, tensors
    return state, verified_fingerprint(Path(folder), digests)


def check_weights(folder: Path) -> str:
    """The folder's fingerprint, its weights checked: for backends that read the files
    themselves (vLLM)."""
    return read_checked_weights(folder, keep=False)[1]


def load_checked_model(folder: Path, dtype: str, device: str):
    """The folder's model for the hf backend, its weights read from disk once
    (:func:`read_checked_weights`) and handed to transformers as the state dict; the loaded
    model goes to lm-eval as it is. Returns (model, fingerprint)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    state, fingerprint = read_checked_weights(folder, keep=True)
    config = AutoConfig.from_pretrained(folder)
    if dtype == "auto":  # as transformers reads it: the config's dtype, else the weights'
        torch_dtype = getattr(config, "dtype", None) or next(
            t.dtype for t in state.values() if t.is_floating_point()
        )
    else:
        torch_dtype = getattr(torch, dtype)
    # the Auto class wants a path; the concrete class takes the state dict alone
    model_class = AutoModelForCausalLM._model_mapping[type(config)]
    model = model_class.from_pretrained(None, config=config, state_dict=state, dtype=torch_dtype)
    return model.to(device).eval(), fingerprint


def load_model(folder: Path, dtype: str, device: str):
    """A model folder for the hf backend, loaded as lm-eval would load it (no checks: the
    knowledge curves' checkpoints have no recorded fingerprint)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
