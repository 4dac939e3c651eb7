"""What parsers hand to the chunker: blocks whose spans index the document's text, and the
text a chunk is embedded as."""

from __future__ import annotations

from localrag.documents import BlockJoiner, Chunk


def test_joined_blocks_are_found_at_their_spans() -> None:
    joiner = BlockJoiner()
    parts = [("Intro", ("Guide",)), ("Step one.\nStep two.", ("Guide", "Setup")), ("x", ())]
    for text, path in parts:
        joiner.add(text, "paragraph", path, page=3)
    text = joiner.text
    assert text == "Intro\n\nStep one.\nStep two.\n\nx"
    for block, (expected, path) in zip(joiner.blocks, parts, strict=True):
        assert text[block.char_start : block.char_end] == expected
        assert block.heading_path == path and block.page == 3


def test_an_empty_joiner_has_no_text() -> None:
    joiner = BlockJoiner()
    assert joiner.text == "" and joiner.blocks == []


def test_a_chunk_is_embedded_with_its_heading_path() -> None:
    chunk = Chunk(0, "Run the installer.", ("Guide", "Setup"), 0, 18, 5)
    assert chunk.heading == "Guide > Setup"
    assert chunk.embed_text == "Guide > Setup\n\nRun the installer."
    bare = Chunk(0, "No headings here.", (), 0, 17, 4)
    assert bare.heading == "" and bare.embed_text == "No headings here."
