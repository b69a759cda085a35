"""The weights in and out of training: the base model (one reader per node under FSDP), LoRA
adapters, the final gathered model and the files saved beside it."""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
from pathlib import Path

from cft.core.fingerprints import LOSS_CURVE, folder_fingerprint
from cft.training import TrainingError
from cft.training.launch import Parallelism
from cft.training.metrics import loss_curve_rows
from cft.training.recipe import Job, LoraSettings


def attention_implementation(requested: str, *, cuda: bool) -> str:
    """``auto``: FlashAttention-2 when installed and on CUDA, else PyTorch SDPA (the schema
    allows only these and the three explicit choices)."""
    if requested != "auto":
        return requested
    return "flash_attention_2" if cuda and importlib.util.find_spec("flash_attn") else "sdpa"


def load_model(job: Job, args, parallel: Parallelism, attn: str):
    """The base model with its master weights (fp32, or the authors' pure bf16), and whether
    this process read the weights.

    Under FSDP only local rank 0 reads them (one copy per node in host memory): the other
    ranks build the model without reading anything, on uninitialised storage (``to_empty``:
    pages that are never written are never committed), and accelerate's RAM-efficient FSDP2
    preparation broadcasts rank 0's weights into the shards. The TrainingArguments exist
    first: they start the process group."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = getattr(torch, job.recipe.master_dtype)
    if parallel.fsdp and int(os.environ.get("LOCAL_RANK", "0")) != 0:
        _ = args.device  # initialises torch.distributed
        config = AutoConfig.from_pretrained(job.base_model_dir)
        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
        # Real buffers (rotary frequencies) survive; FSDP2 does not broadcast them.
        buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
        model.to_empty(device="cpu")
        for name, buffer in buffers.items():
            module, _, attribute = name.rpartition(".")
            model.get_submodule(module).get_buffer(attribute).copy_(buffer)
        model.tie_weights()  # as from_pretrained does; FSDP2 maps the tied pair as one
        read_weights = False
    else:
        model = AutoModelForCausalLM.from_pretrained(
            job.base_model_dir, dtype=dtype, attn_implementation=attn
        )
        read_weights = True
    model.config.use_cache = False
    return model, read_weights


def with_lora(model, lora: LoraSettings):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(
        model,
        LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules),
            task_type="CAUSAL_LM",
        ),
    )


def save_final_model(trainer, staging: Path, dtype_name: str) -> None:
    """Gather the full weights once (every rank takes part under FSDP) and save them on the
    main process in the model's configured dtype, through a plain (unsharded) copy of the
    model built on the meta device, so that transformers handles tied weights as usual."""
    import torch
    from transformers import AutoModelForCausalLM

    state = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if not trainer.is_world_process_zero():
        return
    dtype = getattr(torch, dtype_name)
    trained = trainer.accelerator.unwrap_model(trainer.model)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(trained.config, dtype=dtype)
    plain.load_state_dict(
        {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()},
        assign=True,
        strict=False,
    )
    plain.tie_weights()
    missing = [name for name, param in plain.named_parameters() if param.is_meta]
    if missing:
        raise TrainingError(f"the gathered state dict lacks {missing[:5]} (of {len(missing)})")
    plain.generation_config = trained.generation_config
    plain.config.use_cache = True
    plain.save_pretrained(str(staging))


def write_run_files(
    staging: Path, tokenizer, log_history: list[dict], tensorboard_dir: Path
) -> tuple[str, list[dict]]:
    """Beside the saved weights: the tokenizer (and its chat template), the loss curve and
    the TensorBoard events. Returns the model's fingerprint (its files before the records)
    and the loss-curve rows."""
    tokenizer.save_pretrained(str(staging))
    model_fingerprint = folder_fingerprint(staging)
    rows = loss_curve_rows(log_history)
    with (staging / LOSS_CURVE).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["step", "loss"])
        writer.writeheader()
        writer.writerows(rows)
    if tensorboard_dir.is_dir():
        shutil.copytree(tensorboard_dir, staging / "tensorboard")
    return model_fingerprint, rows
