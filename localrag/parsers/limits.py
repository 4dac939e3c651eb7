"""How much a compressed file may unpack to, and the messages that say a file went past it.

A DOCX is a zip and a PDF holds compressed streams: a file well under the size limit can
unpack to gigabytes. Parsers check what they can before unpacking and stop when content
passes `max_unpacked_bytes`, raising SkipFile with a reason the indexer records.
"""

from __future__ import annotations

from localrag.config import DEFAULT_MAX_UNPACKED_BYTES
from localrag.errors import SkipFile
from localrag.sizes import megabytes

__all__ = ["DEFAULT_MAX_UNPACKED_BYTES", "MAX_BLOCKS", "check_blocks", "over_limit"]

# Every block costs ~900 bytes from parsing to its chunk (objects, copies of its text), so a
# 48 MB file of one-line paragraphs under headings would need gigabytes; a real document has
# ~200+ characters a block, under 250k blocks at the size limit.
MAX_BLOCKS = 500_000


def check_blocks(count: int) -> None:
    """Stop a parser that has made more blocks than one file may have."""
    if count > MAX_BLOCKS:
        raise SkipFile(
            f"more than {MAX_BLOCKS:,} paragraphs, headings and other blocks, the most one "
            "file may have"
        )


def over_limit(what: str, size: int, limit: int, *, at_least: bool = False) -> SkipFile:
    """`<what> unpacks to <size>, over the <limit> limit for unpacked content`."""
    amount = f"more than {megabytes(size)}" if at_least else megabytes(size)
    return SkipFile(
        f"{what} unpacks to {amount}, over the {megabytes(limit)} limit for unpacked content"
    )
