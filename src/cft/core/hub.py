"""Hugging Face hub access: the only code that touches the network.

Everything else reads what these functions put on disk. Tokens come only from the HF_TOKEN
environment variable (never from config or a stored login), and the model cache honours HF_HOME.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cft.core.errors import CftError

log = logging.getLogger(__name__)

# Files a transformers model folder needs. Weights: safetensors when the repo has them,
# PyTorch .bin otherwise (see fetch_model).
MODEL_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.jinja", "*.txt", "*.tiktoken"]
MODEL_FALLBACK_PATTERNS = ["*.bin"]
# Second copies of the weights some repos carry for other tools, which transformers never reads:
# Mistral's consolidated*.safetensors (v0.3 ships its weights twice) and Llama-3's original/
# (Meta's own format). Fetched, they double the download; left in the folder, the evaluation
# loader would read and hash them as well.
MODEL_IGNORE_PATTERNS = ["consolidated*", "original/*"]


class HubUnavailableError(CftError, RuntimeError):
    """A repository is neither in the local cache nor reachable; the message says what to do."""


def hf_token() -> str | bool:
    """The token from HF_TOKEN, or False so huggingface_hub does not look elsewhere."""
    return os.environ.get("HF_TOKEN") or False


def snapshot(
    repo_id: str,
    *,
    repo_type: str,
    revision: str,
    allow_patterns: list[str],
    ignore_patterns: list[str] | None = None,
    local_dir: Path | None = None,
    local_files_only: bool = False,
    how_to_fix: str,
) -> Path:
    """``huggingface_hub.snapshot_download`` with errors that say what is missing and how to fix it.

    With ``local_dir`` the files land in that folder (the hub repo's own layout); without it,
    in the HF cache under HF_HOME.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        path = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            local_dir=local_dir,
            allow_patterns=allow_patterns,
            ignore_patterns=ignore_patterns,
            local_files_only=local_files_only,
            token=hf_token(),
        )
    except GatedRepoError as err:
        raise HubUnavailableError(
            f"{repo_type} {repo_id!r} is gated: accept its terms on the hub and export HF_TOKEN "
            f"with a token of that account, then {how_to_fix} ({err.__class__.__name__})"
        ) from err
    except RepositoryNotFoundError as err:
        raise HubUnavailableError(
            f"{repo_type} {repo_id!r} was not found on the hub (or is private and HF_TOKEN "
            f"is not set); check the repo id in config ({err.__class__.__name__})"
        ) from err
    except (LocalEntryNotFoundError, OSError) as err:
        raise HubUnavailableError(
            f"{repo_type} {repo_id!r} (revision {revision!r}) is not available locally and the "
            f"hub cannot be reached: {how_to_fix} ({err.__class__.__name__}: {err})"
        ) from err
    return Path(path)


def fetch_model(name: str, repo_id: str, revision: str, *, local_files_only: bool = False) -> Path:
    """Download (or find in the HF cache) the files of a model repo; returns the snapshot folder."""
    how_to_fix = (
        f"run `snakemake download_models` on a node with internet access (same HF_HOME), "
        f"or set models.{name}.local_path in config to a folder that holds the model"
    )
    folder = snapshot(
        repo_id,
        repo_type="model",
        revision=revision,
        allow_patterns=MODEL_PATTERNS,
        ignore_patterns=MODEL_IGNORE_PATTERNS,
        local_files_only=local_files_only,
        how_to_fix=how_to_fix,
    )
    if not any(folder.glob("*.safetensors")):
        log.info("%s has no safetensors weights; fetching PyTorch .bin weights", repo_id)
        folder = snapshot(
            repo_id,
            repo_type="model",
            revision=revision,
            allow_patterns=MODEL_PATTERNS + MODEL_FALLBACK_PATTERNS,
            ignore_patterns=MODEL_IGNORE_PATTERNS,
            local_files_only=local_files_only,
            how_to_fix=how_to_fix,
        )
    return folder


def fetch_dataset(
    domain: str, repo_id: str, revision: str, allow_patterns: list[str], local_dir: Path
) -> Path:
    """Download a dataset repo's files into ``local_dir`` in the repo's own layout."""
    how_to_fix = (
        f"run `snakemake download_corpora` on a node with internet access, or set "
        f"domains.{domain}.source.local_path in config to a copy laid out like the hub repo"
    )
    return snapshot(
        repo_id,
        repo_type="dataset",
        revision=revision,
        allow_patterns=allow_patterns,
        local_dir=local_dir,
        how_to_fix=how_to_fix,
    )
