"""Getting the data in: the corpus stage (reading, cleaning, dedup, splits), hub downloads, the
base models, and the demo's generated corpora and question sets."""

from cft.core.errors import CftError


class CorpusError(CftError, RuntimeError):
    """The raw corpus cannot be read as configured; the message names the file."""
