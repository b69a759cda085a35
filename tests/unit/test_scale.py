"""Defects that only show at size: the tokenized data's fingerprint against datasets'
re-chunking on save and load (>= 1,000 blocks per split), packing and training at that size."""

from __future__ import annotations

import numpy as np

from cft.core.fingerprints import dataset_fingerprint

BLOCKS = 1500  # above datasets' 1,000-row shards and the packer's 64-row record batches


def random_split(n: int, seed: int, length: int = 16):
    import pyarrow as pa
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, length + 1, size=n)  # variable-length rows, as document chunks
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    ids = rng.integers(0, 49152, size=int(lengths.sum())).astype(np.int32)
    batches = []
    for start in range(0, n, 64):  # the packer's record batches
        stop = min(start + 64, n)
        rows = pa.ListArray.from_arrays(
            pa.array(offsets.to_numpy()[start : stop + 1] - offsets[start].as_py()),
            ids[offsets[start].as_py() : offsets[stop].as_py()],
        )
        prompt = pa.array(rng.integers(-1, 10, size=stop - start).astype(np.int32))
        batches.append(pa.record_batch([rows, prompt], names=["input_ids", "prompt_index"]))
    return Dataset(pa.Table.from_batches(batches))


def test_fingerprint_depends_on_the_rows_not_on_their_chunking(tmp_path):
    from datasets import DatasetDict, load_from_disk

    data = DatasetDict({"train": random_split(BLOCKS, 1), "validation": random_split(BLOCKS, 2)})
    assert data["train"].data.table.column("input_ids").num_chunks > 20
    written = dataset_fingerprint(data)
    data.save_to_disk(str(tmp_path / "a"), max_shard_size="20KB")  # several re-chunked shards
    reloaded = load_from_disk(str(tmp_path / "a"))
    assert reloaded["train"].data.table.column("input_ids").num_chunks != 24
    assert dataset_fingerprint(reloaded) == written
    one_chunk = DatasetDict({k: v.flatten_indices() for k, v in reloaded.items()})
    assert dataset_fingerprint(one_chunk) == written
    # ...and it still sees every change of content
    rows = reloaded["train"].to_dict()
    rows["input_ids"][700][3] += 1
    from datasets import Dataset

    changed = DatasetDict({"train": Dataset.from_dict(rows), "validation": reloaded["validation"]})
    changed = DatasetDict({k: v.cast(reloaded[k].features) for k, v in changed.items()})
    assert dataset_fingerprint(changed) != written
    moved = reloaded["train"].to_dict()  # the same tokens, one row boundary moved
    moved["input_ids"][10] = moved["input_ids"][10] + moved["input_ids"][11][:1]
    moved["input_ids"][11] = moved["input_ids"][11][1:]
    shifted = DatasetDict(
        {
            "train": Dataset.from_dict(moved).cast(reloaded["train"].features),
            "validation": reloaded["validation"],
        }
    )
    assert dataset_fingerprint(shifted) != written
    selected = DatasetDict({k: v.select(range(1, len(v))) for k, v in reloaded.items()})
    assert dataset_fingerprint(selected) != written
