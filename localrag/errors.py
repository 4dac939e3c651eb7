"""The one exception hierarchy: every message is written for the user."""

from __future__ import annotations


class LocalragError(Exception):
    """Base class; the CLI prints these without a traceback."""


class ConfigError(LocalragError):
    """A setting or a path given by the user is unusable."""


class ParseError(LocalragError):
    """One file could not be turned into text; recorded per file, never fatal to a run."""


class SkipFile(ParseError):
    """The file is deliberately not indexed (binary, too big); recorded, not an error."""


class EmbedderError(LocalragError):
    """The embedding model is missing or cannot be loaded."""


class ModelMismatchError(LocalragError):
    """The index was built with a different embedding model than the one in use."""


class IndexModelChanged(ModelMismatchError):
    """The index was moved to another embedding model (`index --reembed`) while this process
    was writing with the old one; the write was refused, nothing of it was stored."""

    def __init__(self, message: str, current: dict[str, object]) -> None:
        super().__init__(message)
        self.current = current  # the identity record the index now holds


class StoreError(LocalragError):
    """The database cannot be opened or is not a localrag index."""


class VectorsGone(StoreError):
    """Vectors the indexer meant to reuse were collected meanwhile (by another process)."""

    def __init__(self, text_hashes: list[str]) -> None:
        super().__init__(f"{len(text_hashes)} reused passage vectors were removed meanwhile")
        self.text_hashes = text_hashes


class ModelError(LocalragError):
    """A language model is missing, is not a usable GGUF file, or cannot be loaded."""


class DiskFullError(StoreError):
    """A write to the index failed for lack of disk space; the transaction was rolled back."""


class DatabaseGone(StoreError):
    """The index file was deleted or replaced while open: writing on would reach no file."""
