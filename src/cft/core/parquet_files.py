"""Parquet files the stages hand each other, written with page checksums and read verified.

A CRC per page (``write_page_checksum``) lets a reader find a damaged page: in an uncompressed
column, a flipped byte otherwise reads back as other text without an error (compressed pages
fail to decompress). Every reader here verifies them and names the file it cannot read.
"""

from __future__ import annotations

import os

from cft.core.errors import DataFileError
from cft.core.io import non_regular_kind

# Options of every parquet writer of the stages.
PARQUET_CHECKSUMS = {"write_page_checksum": True}


def parquet_error(path: str | os.PathLike, error: Exception) -> DataFileError:
    return DataFileError(
        f"{path}: not a readable parquet file ({error}); rerun the stage that wrote it, or "
        "replace the file"
    )


def _require_file(path: str | os.PathLike) -> None:
    kind = non_regular_kind(path)
    if kind == "not found":
        raise DataFileError(f"{path}: no such file; run the stage that writes it first")
    if kind is not None:
        raise DataFileError(f"{path}: {kind}, not a parquet file")


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None):
    """A parquet file as a DataFrame, its page checksums verified; a damaged or non-parquet
    file raises :class:`DataFileError` naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _require_file(path)
    try:
        table = pq.read_table(path, columns=columns, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as error:
        raise parquet_error(path, error) from None
    return table.to_pandas()


def verify_parquet(path: str | os.PathLike) -> int:
    """Read a parquet file through once, row group by row group, verifying its page checksums
    (for readers that do not verify them, such as datasets); returns its row count. A damaged
    or non-parquet file raises :class:`DataFileError` naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _require_file(path)
    try:
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
        for group in range(parquet.num_row_groups):
            parquet.read_row_group(group)
    except (OSError, pa.ArrowException) as error:
        raise parquet_error(path, error) from None
    return parquet.metadata.num_rows
