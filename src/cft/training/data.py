"""The packed blocks a job trains on, checked against what the tokenize stage recorded, and the
collators that make micro-batches of them (padded, or padding-free)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cft.core.fingerprints import dataset_fingerprint
from cft.core.io import read_json
from cft.training import TrainingError


def verify_data(tokenized, stats: dict, folder) -> None:
    """Train only on the blocks the tokenize stage wrote: their fingerprint must equal the one
    its stats.json records."""
    found = dataset_fingerprint(tokenized)
    if found != stats["fingerprint"]:
        raise TrainingError(
            f"{folder}: the tokenized data changed after they were written (fingerprint "
            f"{found[:12]}, stats.json records {stats['fingerprint'][:12]}); rerun the tokenize "
            f"stage"
        )


def load_tokenized(tokenized_dir: str, *, verify: bool = True):
    """The tokenized dataset and its stats record; ``verify``: the blocks checked against the
    record (one read of the data: a few seconds per GB, docs/guarantees.md)."""
    from datasets import load_from_disk

    stats = Path(tokenized_dir) / "stats.json"
    if not stats.is_file():
        raise TrainingError(
            f"{tokenized_dir}: no stats.json, so not a folder the tokenize stage finished "
            f"(it writes the record last); rerun the tokenize stage"
        )
    try:
        tokenized = load_from_disk(tokenized_dir)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise TrainingError(
            f"{tokenized_dir}: not a readable tokenized dataset ({err}); was it truncated? "
            f"rerun the tokenize stage"
        ) from None
    data_stats = read_json(stats)
    if verify:
        verify_data(tokenized, data_stats, tokenized_dir)
    return tokenized, data_stats


# Padding values of the keys that are not token ids (the ids pad with the pad id).
PAD_VALUES = {"labels": -100, "attention_mask": 0}


def collate_blocks(rows: list[dict], pad_id: int = 0) -> dict:
    """Stack sequences into int64 tensors (the loss needs int64 labels), right-padded to the
    longest sequence of the micro-batch: packed blocks all have ``max_seq_len`` tokens and get
    no padding; document chunks pad only to the micro-batch's longest, not to ``max_seq_len``
    (sort-free and deterministic: the batch is what the sampler drew). Padding is ``pad_id``
    (the EOS id, as the authors' code), hidden by the attention mask and never a label."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    batch = {}
    for key in ("input_ids", "labels", "attention_mask"):
        out = np.full((len(rows), width), PAD_VALUES.get(key, pad_id), dtype=np.int64)
        for i, row in enumerate(rows):
            values = np.asarray(row[key])
            out[i, : len(values)] = values
        batch[key] = torch.from_numpy(out)
    return batch


def collate_flat(rows: list[dict]) -> dict:
    """The padding-free micro-batch (``training.padding_free``): the sequences concatenated into
    one row, position ids restarting at 0 for each, no attention mask (transformers then finds
    the sequences from the position ids and attends within each only). The first label of each
    sequence is -100: the shifted loss would otherwise predict it from the previous sequence's
    last token, a prediction the padded batch never makes (its first label falls off the
    shift). So the loss tokens, and the loss, are those of :func:`collate_blocks`. No cache:
    transformers looks for packed sequences only when none is kept."""
    import torch

    ids, labels, positions = [], [], []
    for row in rows:
        n = int(np.sum(row["attention_mask"]))  # stored chunks carry no padding; be safe
        ids.append(np.asarray(row["input_ids"][:n], dtype=np.int64))
        label = np.asarray(row["labels"][:n], dtype=np.int64).copy()
        label[0] = -100
        labels.append(label)
        positions.append(np.arange(n, dtype=np.int64))
    return {
        "input_ids": torch.from_numpy(np.concatenate(ids))[None],
        "labels": torch.from_numpy(np.concatenate(labels))[None],
        "position_ids": torch.from_numpy(np.concatenate(positions))[None],
        "use_cache": False,
    }


def sequence_lengths(batch: dict):
    """The real length of every sequence of a micro-batch: each row's unmasked tokens, or, in
    a padding-free row, the runs of its position ids."""
    import torch

    if "attention_mask" in batch:
        return batch["attention_mask"].sum(dim=1)
    positions = batch["position_ids"].flatten()
    starts = (positions == 0).nonzero().flatten()
    return torch.diff(starts, append=starts.new_tensor([positions.numel()]))
