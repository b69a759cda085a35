"""Fingerprints of what the stages hand each other, and the checks that they still hold.

A model folder's fingerprint is the SHA-256 of the names and full contents of its top-level
files (weights, configs, tokenizer), leaving out the records kept beside them; a tokenized
dataset's is the SHA-256 of every buffer of every column of every split. The stage that writes
either records it; the stages that read them recompute and compare (docs/guarantees.md).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cft.io import file_sha256, read_json

PROVENANCE_FILE = "cft_provenance.json"
# Records the base_model and training stages keep beside a model's files.
METRICS_FILE = "train_metrics.json"
LOSS_CURVE = "loss_curve.csv"
# Files about a model rather than of it: outside its fingerprint.
RECORD_FILES = frozenset({PROVENANCE_FILE, METRICS_FILE, LOSS_CURVE})


def dataset_fingerprint(dataset_dict) -> str:
    """SHA-256 over every column of every block, split by split: equal iff the data are."""
    digest = hashlib.sha256()
    for split in sorted(dataset_dict):
        digest.update(split.encode())
        table = dataset_dict[split].data.table
        for name in sorted(table.column_names):
            digest.update(name.encode())
            for chunk in table.column(name).chunks:
                for buffer in chunk.buffers():
                    if buffer is not None:
                        digest.update(memoryview(buffer))
    return digest.hexdigest()


def folder_fingerprint(folder: Path) -> str:
    """SHA-256 over the names and full contents of a model folder's top-level files (weights,
    configs, tokenizer): equal iff the files are. Left out: the :data:`RECORD_FILES` and hidden
    files, which say things about the folder (the output marker, the timestamp Snakemake adds
    to a directory output after its job)."""
    digest = hashlib.sha256()
    files = sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and path.name not in RECORD_FILES and not path.name.startswith(".")
    )
    for path in files:
        digest.update(f"{path.name}\n{file_sha256(path)}\n".encode())
    return digest.hexdigest()


class ModelFilesError(RuntimeError):
    """A model folder's weights are unreadable or hold non-finite values."""


def recorded_fingerprint(folder: Path) -> str | None:
    """The fingerprint the stage that wrote a model folder recorded (base model: its
    provenance file; fine-tuned model: its training metrics), or None."""
    for record, key in ((PROVENANCE_FILE, "fingerprint"), (METRICS_FILE, "model_fingerprint")):
        if (Path(folder) / record).is_file():
            return read_json(Path(folder) / record).get(key)
    return None


def verified_fingerprint(folder: Path) -> str:
    """The folder's fingerprint, checked against the recorded one (ModelFilesError if the
    files changed since they were written)."""
    found, recorded = folder_fingerprint(Path(folder)), recorded_fingerprint(folder)
    if recorded is not None and found != recorded:
        raise ModelFilesError(
            f"{folder}: the model files changed after they were written (fingerprint "
            f"{found[:12]}, recorded {recorded[:12]}); rerun the stage that wrote them"
        )
    return found
