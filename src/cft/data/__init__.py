"""Getting the data in: the corpus stage (reading, cleaning, dedup, splits), hub downloads, the
base models, and the demo's generated corpora and question sets."""
