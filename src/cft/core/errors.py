"""The pipeline's errors. Every error it raises on purpose derives from :class:`CftError`: its
message says what is wrong, where (the file, key or argument) and what to do, so a command
logs it as ``<stage> failed: <message>`` alone (:mod:`cft.core.logging_utils`); anything else is a
bug and keeps its traceback. Each component keeps its own class (ConfigError, OutputError,
CorpusError, ...) beside the code that raises it, with the builtin base callers may catch."""

from __future__ import annotations


class CftError(Exception):
    """An error raised on purpose, with a message that explains it."""


class DataFileError(CftError, ValueError):
    """A data file a stage reads is damaged, empty or of the wrong kind; the message names
    it."""
