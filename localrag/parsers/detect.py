"""Content sniffing: is this binary, and which text encoding is it in."""

from __future__ import annotations

import codecs
import re

from localrag.errors import ParseError

SNIFF_BYTES = 8192

# (offset, signature): formats that are never worth reading as text.
_MAGIC: tuple[tuple[int, bytes], ...] = (
    (0, b"\x89PNG\r\n\x1a\n"),
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"GIF87a"),
    (0, b"GIF89a"),
    (0, b"II*\x00"),  # TIFF little-endian
    (0, b"MM\x00*"),  # TIFF big-endian
    (0, b"8BPS"),  # Photoshop
    (0, b"PK\x03\x04"),  # zip, docx, xlsx, jar, epub
    (0, b"PK\x05\x06"),  # empty zip
    (0, b"\x1f\x8b"),  # gzip
    (0, b"\xfd7zXZ\x00"),
    (0, b"7z\xbc\xaf\x27\x1c"),
    (0, b"Rar!\x1a\x07"),
    (0, b"\x28\xb5\x2f\xfd"),  # zstd
    (0, b"\x7fELF"),
    (0, b"\xfe\xed\xfa\xce"),  # Mach-O
    (0, b"\xfe\xed\xfa\xcf"),
    (0, b"\xce\xfa\xed\xfe"),
    (0, b"\xcf\xfa\xed\xfe"),
    (0, b"\xca\xfe\xba\xbe"),  # Mach-O fat binary / Java class
    (0, b"\x00asm"),  # WebAssembly
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"),  # OLE2: .doc, .xls, .msg
    (0, b"%PDF-"),
    (0, b"SQLite format 3\x00"),
    (0, b"OggS"),
    (0, b"fLaC"),
    (0, b"ID3"),  # MP3
    (0, b"MThd"),  # MIDI
    (0, b"wOFF"),
    (0, b"wOF2"),
    (0, b"OTTO"),
    (0, b"PAR1"),  # Parquet
    (0, b"\x93NUMPY"),
    (4, b"ftyp"),  # MP4, MOV, HEIC
)

# Byte-order marks, longest first: UTF-32 LE starts with the UTF-16 LE mark.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# C0 controls that never appear in text (tab, LF, VT, FF, CR and ESC do).
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27))
_CONTROL_TABLE = bytes.maketrans(b"", b"")
_HIGH = bytes(range(128, 256))

_TYPOGRAPHIC = frozenset("‘’‚“”„–—…•·°±×÷€£¥©®™«»§¶¿¡")

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def bom_encoding(data: bytes) -> tuple[str, int] | None:
    """The encoding named by a byte-order mark and the mark's length."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name, len(bom)
    return None


def has_magic(data: bytes) -> bool:
    """Whether the data starts like a known binary format."""
    if data[:4] == b"RIFF" and len(data) >= 12:  # WAV, AVI, WebP
        return True
    return any(data[off : off + len(sig)] == sig for off, sig in _MAGIC)


def is_probably_binary(data: bytes) -> bool:
    """Whether data looks like a binary file, judged by content (not by name)."""
    if not data:
        return False
    if bom_encoding(data) is not None:
        return False
    if has_magic(data):
        return True
    sample = data[:SNIFF_BYTES]
    if b"\x00" in sample:
        return True
    controls = len(sample) - len(sample.translate(_CONTROL_TABLE, _CONTROL))
    # A stray form feed or two is text; random bytes are ~10% controls.
    return controls / len(sample) > 0.02


def _clearly_legacy_text(data: bytes, text: str) -> bool:
    """Whether a single-byte decoding looks like prose rather than noise."""
    high = len(data) - len(data.translate(_CONTROL_TABLE, _HIGH))
    if high / max(len(data), 1) > 0.3:
        return False
    # Counted, not listed: a list of a 48 MB file's non-ASCII characters took gigabytes.
    non_ascii = sum(1 for ch in text if ord(ch) >= 128)
    if not non_ascii:
        return True
    # Accented letters and typographic punctuation, not box-drawing soup.
    plausible = sum(1 for ch in text if ord(ch) >= 128 and (ch.isalpha() or ch in _TYPOGRAPHIC))
    return plausible / non_ascii >= 0.8


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Bytes → str: BOM, UTF-8, a declared charset, then cp1252/latin-1 if clearly text."""
    found = bom_encoding(data)
    if found is not None:
        name, skip = found
        try:
            return data[skip:].decode(name)
        except UnicodeDecodeError:
            raise ParseError(f"cannot decode text (invalid {name.upper()})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        first_error = exc
    if declared:
        try:
            if codecs.lookup(declared).name != "utf-8":
                return data.decode(declared)
        except (LookupError, UnicodeDecodeError):
            pass
    # Mostly valid UTF-8 with a few bad bytes (a log with one stray Latin-1 char): keep UTF-8.
    lenient = data.decode("utf-8", errors="replace")
    bad = lenient.count("\ufffd")
    good_multibyte = sum(1 for ch in lenient if ord(ch) >= 128 and ch != "\ufffd")
    if good_multibyte and bad <= max(2, len(lenient) // 1000) and bad < good_multibyte:
        return lenient
    for legacy in ("cp1252", "latin-1"):
        try:
            text = data.decode(legacy)
        except UnicodeDecodeError:
            continue
        if _clearly_legacy_text(data, text):
            return text
        break
    raise ParseError("cannot decode text (not UTF-8)") from first_error


def declared_html_charset(data: bytes) -> str | None:
    """The charset an HTML file declares in a <meta> tag, if any."""
    m = _META_CHARSET.search(data[:4096])
    return m.group(1).decode("ascii", "replace") if m else None


def normalize_newlines(text: str) -> str:
    r"""\r\n and lone \r become \n; no other character counts as a line break.

    Python's str.splitlines also breaks on \x0b, \x0c, \x1c-\x1e, \x85, \u2028 and \u2029,
    which editors do not show as new lines, so it must never be used for line numbers.
    """
    if "\r" not in text:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")
