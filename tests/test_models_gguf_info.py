"""read_gguf_info: what a valid header says, and a clear error naming the file for a bad one."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import gguf
import pytest

from localrag.errors import ModelError
from localrag.models.gguf_info import ArrayInfo, read_gguf_info
from tests.helpers.gguf import TEMPLATE, write_gguf


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "tiny.gguf", q8_rows=2)


def _error(path: Path) -> str:
    with pytest.raises(ModelError) as info:
        read_gguf_info(path)
    message = str(info.value)
    assert str(path) in message
    return message


def _cut(src: Path, dest: Path, size: int) -> Path:
    dest.write_bytes(src.read_bytes()[:size])
    return dest


def test_reads_what_the_header_says(tiny: Path) -> None:
    info = read_gguf_info(tiny)
    assert info.path == tiny
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.name == "tiny-test"
    assert info.file_type == info.quantization == "Q4_K_M"
    assert info.context_length == 2048
    assert info.chat_template == TEMPLATE
    assert info.tensor_count == 3
    assert info.parameter_count == 8 * 32 + 32 + 2 * 256
    assert info.size_bytes == tiny.stat().st_size
    assert info.metadata["tokenizer.ggml.tokens"] == ArrayInfo("STRING", 4)


def test_agrees_with_the_gguf_package_reader(tiny: Path) -> None:
    reference = gguf.GGUFReader(tiny)
    info = read_gguf_info(tiny)
    assert info.tensor_count == len(reference.tensors)
    assert info.parameter_count == sum(t.n_elements for t in reference.tensors)
    arch = reference.fields["general.architecture"]
    assert info.architecture == bytes(arch.parts[arch.data[0]]).decode()


@pytest.mark.parametrize(
    ("file_type", "expected"),
    [
        (gguf.LlamaFileType.ALL_F32, "F32"),
        (gguf.LlamaFileType.MOSTLY_F16, "F16"),
        (gguf.LlamaFileType.MOSTLY_Q8_0, "Q8_0"),
        (gguf.LlamaFileType.MOSTLY_Q4_K_M, "Q4_K_M"),
        (gguf.LlamaFileType.MOSTLY_Q5_K_S | gguf.LlamaFileType.GUESSED, "Q5_K_S"),
    ],
)
def test_file_type_names(tmp_path: Path, file_type: int, expected: str) -> None:
    path = write_gguf(tmp_path / "m.gguf", file_type=file_type)
    assert read_gguf_info(path).file_type == expected


@pytest.mark.parametrize("file_type", [None, 9999])
def test_without_a_known_file_type_the_dominant_tensor_type_is_named(
    tmp_path: Path, file_type: int | None
) -> None:
    # The Q8_0 tensor (64 rows of 256) holds more bytes than the small F32 ones.
    path = write_gguf(tmp_path / "m.gguf", file_type=file_type, q8_rows=64)
    assert read_gguf_info(path).file_type == "Q8_0"
    f32_only = write_gguf(tmp_path / "f.gguf", file_type=file_type)
    assert read_gguf_info(f32_only).file_type == "F32"


def test_optional_metadata_may_be_absent(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", name=None, context_length=None, chat_template=None)
    info = read_gguf_info(path)
    assert (info.name, info.context_length, info.chat_template) == (None, None, None)


def _data_end(path: Path) -> int:
    reader = gguf.GGUFReader(path)
    return max(t.data_offset + t.n_bytes for t in reader.tensors)


def test_custom_alignment_is_honoured(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", alignment=256)
    end = _data_end(path)
    # Padding after the last tensor is optional (llama.cpp does not read it) ...
    assert read_gguf_info(_cut(path, tmp_path / "exact.gguf", end)).tensor_count == 2
    # ... but one byte less is missing weights, found only when data starts 256-aligned.
    assert "truncated" in _error(_cut(path, tmp_path / "cut.gguf", end - 1))


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in _error(tmp_path / "nope.gguf")


def test_folder(tmp_path: Path) -> None:
    folder = tmp_path / "model.gguf"
    folder.mkdir()
    assert "folder" in _error(folder)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.touch()
    assert "empty" in _error(path)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("These are my notes, not a model.\n" * 10)
    assert "not a GGUF" in _error(path)


def test_safetensors_file_is_recognised(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    message = _error(path)
    assert "not a GGUF" in message
    assert "safetensors" in message


def test_zip_archive_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    assert "zip" in _error(path)


@pytest.mark.parametrize("version", [1, 4, 99])
def test_unsupported_version(tiny: Path, tmp_path: Path, version: int) -> None:
    data = bytearray(tiny.read_bytes())
    data[4:8] = struct.pack("<I", version)
    path = tmp_path / f"v{version}.gguf"
    path.write_bytes(bytes(data))
    message = _error(path)
    assert f"version {version}" in message


def _cut_points(path: Path) -> dict[str, int]:
    """Offsets inside each part of the file, found with the gguf package's own reader."""
    reader = gguf.GGUFReader(path)
    template = reader.fields["tokenizer.chat_template"]
    first_tensor = reader.tensors[0].field
    return {
        "magic": 2,
        "header": 10,
        "metadata": template.offset + 20,
        "tensor table": first_tensor.offset + 5,
        "data start": reader.data_offset,
        "tensor data": reader.data_offset + 100,
        "last byte": path.stat().st_size - 1,
    }


@pytest.mark.parametrize(
    "where",
    ["magic", "header", "metadata", "tensor table", "data start", "tensor data", "last byte"],
)
def test_truncated_anywhere(tiny: Path, tmp_path: Path, where: str) -> None:
    size = _cut_points(tiny)[where]
    assert 0 < size < tiny.stat().st_size
    cut = _cut(tiny, tmp_path / f"cut-{size}.gguf", size)
    assert "truncated" in _error(cut)


def test_every_prefix_is_refused(tiny: Path, tmp_path: Path) -> None:
    """No cut point slips through or escapes as anything but ModelError."""
    data = tiny.read_bytes()
    cut = tmp_path / "cut.gguf"
    for size in range(1, len(data), 7):
        cut.write_bytes(data[:size])
        with pytest.raises(ModelError):
            read_gguf_info(cut)


def _patch(src: Path, dest: Path, offset: int, fmt: str, value: int) -> Path:
    data = bytearray(src.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    dest.write_bytes(bytes(data))
    return dest


def test_unknown_metadata_type_is_damaged(tiny: Path, tmp_path: Path) -> None:
    field = gguf.GGUFReader(tiny).fields["general.name"]
    type_offset = field.offset + 8 + len(bytes(field.parts[1]))  # after the key
    path = _patch(tiny, tmp_path / "bad.gguf", type_offset, "<I", 77)
    message = _error(path)
    assert "damaged" in message
    assert "general.name" in message


def test_absurd_array_length_fails_fast(tiny: Path, tmp_path: Path) -> None:
    field = gguf.GGUFReader(tiny).fields["tokenizer.ggml.tokens"]
    length_offset = field.offset + 8 + len(bytes(field.parts[1])) + 4 + 4
    path = _patch(tiny, tmp_path / "bad.gguf", length_offset, "<Q", 1 << 60)
    started = time.perf_counter()
    assert "truncated" in _error(path)
    assert time.perf_counter() - started < 1


def test_unknown_tensor_type_is_named(tiny: Path, tmp_path: Path) -> None:
    reader = gguf.GGUFReader(tiny)
    tensor = reader.tensors[0].field
    type_offset = tensor.offset + sum(int(p.nbytes) for p in tensor.parts[:4])
    path = _patch(tiny, tmp_path / "bad.gguf", type_offset, "<I", 250)
    message = _error(path)
    assert "type 250" in message
    assert reader.tensors[0].name in message


def test_without_architecture(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", with_arch=False)
    assert "general.architecture" in _error(path)


def test_without_tensors(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "vocab.gguf", with_tensors=False)
    assert "no weights" in _error(path)


def test_other_byte_order(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "be.gguf", endianess=gguf.GGUFEndian.BIG)
    assert "byte order" in _error(path)


def test_large_vocabulary_is_skipped_not_read(tmp_path: Path) -> None:
    """A 150k-token vocabulary and merges: a header check must stay well under a second."""
    vocab = [f"token{i}" for i in range(150_000)]
    path = write_gguf(tmp_path / "big-vocab.gguf", vocab=vocab)
    started = time.perf_counter()
    info = read_gguf_info(path)
    elapsed = time.perf_counter() - started
    assert info.metadata["tokenizer.ggml.tokens"] == ArrayInfo("STRING", 150_000)
    assert elapsed < 1.0, f"{elapsed:.2f} s"
