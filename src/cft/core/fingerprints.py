"""Fingerprints of what the stages hand each other, and the checks that they still hold.

A model folder's fingerprint is the SHA-256 of the names and full contents of its top-level
files (weights, configs, tokenizer), leaving out the records kept beside them; a tokenized
dataset's is the SHA-256 of every column's values of every split, whatever their chunking.
The stage that writes either records it; the stages that read them recompute and compare
(docs/guarantees.md).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cft.core.errors import CftError
from cft.core.io import file_sha256, read_json, write_json

PROVENANCE_FILE = "cft_provenance.json"
# Records the base_model and training stages keep beside a model's files.
METRICS_FILE = "train_metrics.json"
LOSS_CURVE = "loss_curve.csv"
# Files about a model rather than of it: outside its fingerprint.
RECORD_FILES = frozenset({PROVENANCE_FILE, METRICS_FILE, LOSS_CURVE})


def dataset_fingerprint(dataset_dict) -> str:
    """SHA-256 of the data of every column of every split, independent of how Arrow chunks
    them: equal iff the rows are.

    ``save_to_disk``/``load_from_disk`` re-chunk a table (the packer writes 64-row record
    batches, datasets saves 1,000-row shards), so the chunks' buffers cannot be hashed as they
    lie. Per column, the values are streamed chunk by chunk into one digest and, for list
    columns, the row lengths into another: both streams are the same whatever the chunking.
    One read of the data and no copy of a column; SHA-256 runs at about 1-2 GB/s on one core
    (docs/guarantees.md).
    """
    digest = hashlib.sha256()
    for split in sorted(dataset_dict):
        table = dataset_dict[split].data.table
        digest.update(f"split\x1f{split}\x1f{table.num_rows}\x1f".encode())
        for name in sorted(table.column_names):
            column = table.column(name)
            values, lengths = hashlib.sha256(), hashlib.sha256()
            for chunk in column.chunks:
                if hasattr(chunk, "value_lengths"):  # a list column
                    lengths.update(_value_bytes(chunk.value_lengths(), name))
                    chunk = chunk.flatten()  # the values its (possibly sliced) rows hold
                values.update(_value_bytes(chunk, name))
            digest.update(
                f"{name}\x1f{column.type}\x1f{values.hexdigest()}\x1f{lengths.hexdigest()}\x1f".encode()
            )
    return digest.hexdigest()


def _value_bytes(array, column: str) -> memoryview:
    """The bytes of a numeric Arrow array's values, in row order (zero-copy for numbers)."""
    import numpy as np

    values = None if array.null_count else array.to_numpy(zero_copy_only=False)
    if values is None or values.dtype.kind not in "iuf":
        raise TypeError(
            f"dataset_fingerprint: column {column!r} holds {array.type}"
            f"{' with nulls' if array.null_count else ''}; tokenized data are non-null numbers"
        )
    return memoryview(np.ascontiguousarray(values)).cast("B")


def folder_fingerprint(folder: Path, file_digests: dict[str, str] | None = None) -> str:
    """SHA-256 over the names and full contents of a model folder's top-level files (weights,
    configs, tokenizer): equal iff the files are. Left out: the :data:`RECORD_FILES` and hidden
    files, which say things about the folder (the output marker, the timestamp Snakemake adds
    to a directory output after its job). ``file_digests``: SHA-256s of files a caller has
    already hashed while reading them (name -> hex), so the weights are not read twice."""
    known = file_digests or {}
    digest = hashlib.sha256()
    files = sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and path.name not in RECORD_FILES and not path.name.startswith(".")
    )
    for path in files:
        digest.update(f"{path.name}\n{known.get(path.name) or file_sha256(path)}\n".encode())
    return digest.hexdigest()


class ModelFilesError(CftError, RuntimeError):
    """A model folder's weights are unreadable or hold non-finite values."""


def record_fingerprint(folder: Path, **provenance) -> str:
    """Write the folder's provenance record with its fingerprint (what the base_model stage
    does for every model it prepares); returns the fingerprint."""
    fingerprint = folder_fingerprint(Path(folder))
    write_json(Path(folder) / PROVENANCE_FILE, {**provenance, "fingerprint": fingerprint})
    return fingerprint


def recorded_fingerprint(folder: Path) -> str:
    """The fingerprint the stage that wrote a model folder recorded (base model: its
    provenance file; fine-tuned model: its training metrics). A folder without either record,
    or a record without the fingerprint, is refused: nothing would say what its files should
    be."""
    for record, key in ((PROVENANCE_FILE, "fingerprint"), (METRICS_FILE, "model_fingerprint")):
        path = Path(folder) / record
        if path.is_file():
            recorded = read_json(path)
            if not isinstance(recorded, dict) or not isinstance(recorded.get(key), str):
                raise ModelFilesError(f"{path}: no {key!r}; expected the model's fingerprint")
            return recorded[key]
    raise ModelFilesError(
        f"{folder}: neither {PROVENANCE_FILE} nor {METRICS_FILE} is there, so nothing says what "
        "the model files should be; give a folder the base_model or train stage wrote (a model "
        "of your own: a `models` entry with local_path, which the base_model stage records)"
    )


def verified_fingerprint(folder: Path, file_digests: dict[str, str] | None = None) -> str:
    """The folder's fingerprint, checked against the recorded one (ModelFilesError if the
    files changed since they were written, or if no record says what they were)."""
    recorded = recorded_fingerprint(folder)
    found = folder_fingerprint(Path(folder), file_digests)
    if found != recorded:
        raise ModelFilesError(
            f"{folder}: the model files changed after they were written (fingerprint "
            f"{found[:12]}, recorded {recorded[:12]}); rerun the stage that wrote them"
        )
    return found
