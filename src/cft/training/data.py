"""The packed blocks a job trains on, checked against what the tokenize stage recorded."""

from __future__ import annotations

from pathlib import Path

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
