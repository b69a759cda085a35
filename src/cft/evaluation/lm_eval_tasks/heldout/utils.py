"""The documents of one split of a domain's corpus, as lm-eval's ``custom_dataset`` hook.

lm-eval calls :func:`corpus_split` with the task's metadata: ``corpus_split`` from the YAML and
``corpus``, the domain's ``documents.parquet``, which the evaluation stage adds for the domain
it scores (:func:`cft.evaluation.task_folders.task_metadata`)."""

from __future__ import annotations


def corpus_split(corpus: str | None = None, corpus_split: str = "validation", **_metadata):
    import datasets

    from cft.core.errors import DataFileError
    from cft.core.parquet_files import read_parquet

    if corpus is None:
        raise DataFileError(
            "the held-out text task reads a domain's corpus; it runs through the evaluation "
            "stage, which names the domain's documents.parquet in the task's metadata"
        )
    table = read_parquet(corpus, columns=["doc_id", "split", "text"])
    rows = table[table["split"] == corpus_split].sort_values("doc_id", kind="stable")
    if rows.empty:
        raise DataFileError(
            f"{corpus}: no documents in the {corpus_split!r} split to score; raise "
            f"corpus.validation_fraction, or drop heldout_text from evaluation.suites"
        )
    documents = datasets.Dataset.from_dict(
        {"doc_id": rows["doc_id"].tolist(), "text": rows["text"].tolist()}
    )
    return datasets.DatasetDict({"test": documents})
