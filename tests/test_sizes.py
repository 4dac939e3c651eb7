"""Byte sizes: one decimal unit everywhere, so a limit reads back as it was given."""

from __future__ import annotations

from localrag.config import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_UNPACKED_BYTES
from localrag.sizes import format_bytes, megabytes


def test_format_bytes_uses_decimal_units() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(999) == "999 B"
    assert format_bytes(1000) == "1.0 kB"
    assert format_bytes(1_048_576) == "1.0 MB"
    assert format_bytes(1_100_000_000) == "1.1 GB"


def test_default_limits_read_back_as_round_numbers() -> None:
    # `--max-file-size 50` means 50,000,000 bytes; the default must read the same way.
    assert format_bytes(DEFAULT_MAX_FILE_BYTES) == "50.0 MB"
    assert megabytes(DEFAULT_MAX_UNPACKED_BYTES) == "64.0 MB"
    assert megabytes(500_000) == "0.5 MB"
