"""Language models (GGUF files) in the models folder, and the manifest that names them.

`models.json` in the models folder lists every installed model (name, file, sha256, what its header
says, where it came from) and which one is the default. It is rewritten whole through a temporary
file and os.replace, so a crash leaves the old manifest or the new one. Files come from
`import_file` (a local file: the air-gapped path) or `pull` (Hugging Face; with
`embedder_import.download_embedder`, the only code in localrag that touches the network). Both
check the file with `read_gguf_info` before registering it, so a bad file never becomes a model
that fails later at load time.
"""

from __future__ import annotations

import contextlib
import email.message
import hashlib
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from http.client import HTTPException, HTTPMessage, HTTPResponse
from pathlib import Path
from typing import Any, Literal

from localrag import config
from localrag.errors import ModelError
from localrag.hashing import sha256_file
from localrag.models.gguf_info import GGUFInfo, read_gguf_info
from localrag.private_files import make_private_dir, write_private_text

MANIFEST_FILE = "models.json"
MANIFEST_VERSION = 1
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
PART_SUFFIX = ".part"
_CHUNK = 4 << 20
_TIMEOUT_S = 60.0
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,99}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_USER_AGENT = "localrag/0.1 (model pull)"

Progress = Callable[[int, int | None], None]  # bytes done, total bytes (None: unknown)
ImportMode = Literal["copy", "symlink", "move"]


@dataclass(frozen=True)
class CatalogModel:
    """A model `localrag models pull NAME` knows where to find."""

    name: str
    repo: str
    file: str
    summary: str
    sha256: str | None = None  # pinned hash, checked as well as the one the server publishes


# Small instruct models at Q4_K_M that answer well over retrieved passages and fit a laptop.
CATALOG: dict[str, CatalogModel] = {
    m.name: m
    for m in (
        CatalogModel(
            "qwen2.5-1.5b-instruct",
            "Qwen/Qwen2.5-1.5B-Instruct-GGUF",
            "qwen2.5-1.5b-instruct-q4_k_m.gguf",
            "Qwen2.5 1.5B Instruct, about 1.1 GB: quick on any laptop (recommended)",
        ),
        CatalogModel(
            "qwen2.5-3b-instruct",
            "Qwen/Qwen2.5-3B-Instruct-GGUF",
            "qwen2.5-3b-instruct-q4_k_m.gguf",
            "Qwen2.5 3B Instruct, about 2 GB: better answers, needs about 4 GB of memory",
        ),
        CatalogModel(
            "llama-3.2-3b-instruct",
            "bartowski/Llama-3.2-3B-Instruct-GGUF",
            "Llama-3.2-3B-Instruct-Q4_K_M.gguf",
            "Llama 3.2 3B Instruct, about 2 GB",
        ),
    )
}
RECOMMENDED = "qwen2.5-1.5b-instruct"


@dataclass(frozen=True)
class ModelEntry:
    """One installed language model, as recorded in the manifest."""

    name: str
    file: str  # relative to the models folder, or absolute for a file registered where it is
    sha256: str
    quantization: str
    context_length: int | None
    architecture: str
    size_bytes: int
    source: str  # "hf:OWNER/REPO/FILE", "import:/original/path", "finetune", …
    added_at: str
    base_model: str | None = None  # fine-tuned models only
    adapter: str | None = None  # fine-tuned models only
    # Fine-tuned models: how they were made (base model hash, dataset hash, training settings).
    lineage: dict[str, Any] | None = None
    # False for a pre-trained (base) model, whose file has no chat template; None: recorded
    # by a version that did not look.
    chat: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> ModelEntry:
        if not isinstance(data, dict):
            raise ValueError("a model entry is not an object")
        known = {f.name for f in fields(cls)}
        for key in ("name", "file"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ValueError(f"a model entry has no {key!r}")
        values = {k: v for k, v in data.items() if k in known}  # newer keys are ignored
        values.setdefault("sha256", "")
        values.setdefault("quantization", "unknown")
        values.setdefault("context_length", None)
        values.setdefault("architecture", "unknown")
        values.setdefault("size_bytes", 0)
        values.setdefault("source", "")
        values.setdefault("added_at", "")
        return cls(**values)


@dataclass(frozen=True)
class PullResult:
    entry: ModelEntry
    path: Path
    # The published sha256 the download was checked against; None when the server gave none
    # and the catalog pins none, so no check was possible.
    verified_sha256: str | None
    resumed_from: int  # bytes already downloaded by an earlier, interrupted pull
    already_installed: bool = False


@dataclass(frozen=True)
class RemoveResult:
    entry: ModelEntry
    file_deleted: bool
    new_default: str | None


@dataclass
class _Manifest:
    default: str | None
    entries: list[ModelEntry]

    def find(self, name: str) -> ModelEntry | None:
        return next((e for e in self.entries if e.name == name), None)


def derive_name(file_name: str) -> str:
    """A model name from a file name: lowercase, without .gguf, other characters as '-'."""
    stem = file_name[:-5] if file_name.lower().endswith(".gguf") else file_name
    name = re.sub(r"[^a-z0-9._+-]+", "-", stem.lower()).strip("-._+")
    return name[:100] or "model"


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ModelError(
            f"invalid model name {name!r}: use lowercase letters, digits and . _ + - "
            "(starting with a letter or digit, at most 100 characters)"
        )
    return name


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ModelRegistry:
    """The language models installed in one models folder."""

    def __init__(self, models_dir: str | Path | None = None) -> None:
        self.dir = Path(models_dir).expanduser() if models_dir is not None else config.models_dir()

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST_FILE

    # -- reading ---------------------------------------------------------------------------------

    def entries(self) -> list[ModelEntry]:
        return list(self._load().entries)

    def names(self) -> list[str]:
        return [e.name for e in self._load().entries]

    def default_name(self) -> str | None:
        return self._load().default

    def find(self, name: str) -> ModelEntry | None:
        return self._load().find(name)

    def get(self, name: str) -> ModelEntry:
        manifest = self._load()
        entry = manifest.find(name)
        if entry is None:
            raise ModelError(_unknown_model_message(name, manifest))
        return entry

    def default_entry(self) -> ModelEntry | None:
        manifest = self._load()
        return manifest.find(manifest.default) if manifest.default else None

    def holds(self, path: str | Path) -> bool:
        """Whether `path` lies in the models folder itself: `import_file` registers such a
        file where it lies instead of copying it."""
        return _same_file(Path(path).expanduser().absolute().parent, self.dir)

    def installed_as(
        self, path: str | Path, name: str | None = None, progress: Progress | None = None
    ) -> ModelEntry | None:
        """The installed model `path` already is, so importing it again changes nothing.

        Either the very file of an entry (in the models folder, or the original a symlinked
        model points at), or the same bytes as the entry that importing would name `name`
        (default: from the file name), such as the download a copy was made from. Hashes
        `path` only in that second case, and only when the sizes agree.
        """
        src = Path(path).expanduser().absolute()
        manifest = self._load()
        for entry in manifest.entries:
            if _same_file(self.path_of(entry), src):
                return entry
        named = manifest.find(name or derive_name(src.name))
        try:
            same_size = named is not None and src.stat().st_size == named.size_bytes
        except OSError:
            return None
        if named is not None and same_size and sha256_file(src, progress) == named.sha256:
            return named
        return None

    def entry_for_ask(self) -> ModelEntry | None:
        """The model `ask` loads without --model: the default, or the only one installed.

        None when none is installed; ModelError when several are and none is the default.
        """
        return _implicit_choice(self._load())

    def path_of(self, entry: ModelEntry) -> Path:
        file = Path(entry.file)
        return file if file.is_absolute() else self.dir / file

    # -- changing --------------------------------------------------------------------------------

    def set_default(self, name: str) -> ModelEntry:
        with self._update() as manifest:
            entry = manifest.find(name)
            if entry is None:
                raise ModelError(_unknown_model_message(name, manifest))
            manifest.default = name
        return entry

    def add(self, entry: ModelEntry, *, make_default: bool = False) -> ModelEntry:
        """Register a model file already in place (the fine-tune pipeline's output, for one)."""
        validate_name(entry.name)
        with self._update() as manifest:
            if manifest.find(entry.name) is not None:
                raise ModelError(
                    f"a model named {entry.name!r} is already installed; "
                    "choose another name or remove it first"
                )
            manifest.entries.append(entry)
            if make_default or manifest.default is None:
                manifest.default = entry.name
        return entry

    def remove(self, name: str, delete_file: bool = True) -> RemoveResult:
        """Forget a model; delete its file too unless it lives outside the models folder."""
        with self._update() as manifest:
            entry = manifest.find(name)
            if entry is None:
                raise ModelError(_unknown_model_message(name, manifest))
            manifest.entries.remove(entry)
            if manifest.default == name:
                manifest.default = _latest(manifest.entries)
        # The manifest goes first: a crash in between leaves a stray file, never an entry
        # pointing at nothing.
        deleted = delete_file and self._delete_file(entry)
        return RemoveResult(entry, deleted, manifest.default)

    def import_file(
        self,
        path: str | Path,
        name: str | None = None,
        mode: ImportMode = "copy",
        *,
        source: str | None = None,
        base_model: str | None = None,
        adapter: str | None = None,
        lineage: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> ModelEntry:
        """Install a local GGUF file: copied (default), symlinked, or moved into the folder.

        The file is checked first, so a bad one is refused before anything changes; the copy
        hashes as it goes (one read of the file).
        """
        src = Path(path).expanduser().absolute()
        info = read_gguf_info(src)
        name = validate_name(name) if name is not None else derive_name(src.name)
        manifest = self._load()
        same = next((e for e in manifest.entries if _same_file(self.path_of(e), src)), None)
        if same is not None:  # before the name: "pick another name" would not help
            raise ModelError(f"{src} is already installed as {same.name!r}")
        if manifest.find(name) is not None:
            raise ModelError(
                f"a model named {name!r} is already installed; pick another with --name "
                f"or remove it first (`localrag models remove {name}`)"
            )
        make_private_dir(self.dir)
        # A file already in the folder is registered where it lies, not copied beside itself.
        in_place = self.holds(src)
        dest = src if in_place else self.dir / f"{name}.gguf"
        if in_place:
            sha = sha256_file(src, progress)
        elif dest.exists() or dest.is_symlink():
            raise ModelError(f"{dest} already exists and is not registered; move it away first")
        else:
            sha = self._place(src, dest, mode, progress)
        try:
            duplicate = next((e for e in manifest.entries if e.sha256 == sha), None)
            if duplicate is not None:
                raise ModelError(f"{src} is already installed as {duplicate.name!r}")
            entry = _entry_from(name, dest.name, sha, info, source or f"import:{src}")
            return self.add(replace(entry, base_model=base_model, adapter=adapter, lineage=lineage))
        except BaseException:
            if not in_place:
                _undo_place(src, dest, mode)
            raise

    def pull(self, spec: str | None = None, progress: Progress | None = None) -> PullResult:
        """Download a catalog model or `hf:OWNER/REPO/FILE.gguf`, resuming an interrupted pull."""
        target = resolve_pull_spec(spec)
        existing = self.find(target.name)
        if existing is not None and self.path_of(existing).is_file():
            return PullResult(existing, self.path_of(existing), None, 0, already_installed=True)
        if _env_flag("HF_HUB_OFFLINE"):
            raise ModelError(
                "HF_HUB_OFFLINE is set, so localrag will not download; unset it to pull, or "
                "copy the .gguf file here and run `localrag models import FILE.gguf`"
            )
        make_private_dir(self.dir)
        final = self.dir / target.file.rsplit("/", 1)[-1]
        self._refuse_taken(final, target.name)
        part = final.with_name(final.name + PART_SUFFIX)
        fetched = _Downloader(hf_url(target.repo, target.file), part, progress).run()
        checked = _verify_sha256(part, fetched, target)
        try:
            info = read_gguf_info(part)
        except ModelError as exc:
            part.unlink(missing_ok=True)
            raise ModelError(f"the downloaded file is not a usable model: {exc}") from None
        os.replace(part, final)
        entry = _entry_from(
            target.name, final.name, fetched.sha256, info, f"hf:{target.repo}/{target.file}"
        )
        with self._update() as manifest:
            manifest.entries = [e for e in manifest.entries if e.name != entry.name]
            manifest.entries.append(entry)
            manifest.default = manifest.default or entry.name
        return PullResult(entry, final, checked, fetched.resumed_from)

    # -- internals -------------------------------------------------------------------------------

    def _delete_file(self, entry: ModelEntry) -> bool:
        """Delete a model's file, or its symlink; a file registered where it lies is the user's."""
        if Path(entry.file).is_absolute():
            return False
        path = self.path_of(entry)
        if not (path.is_symlink() or path.exists()):
            return False
        path.unlink()
        return True

    def _refuse_taken(self, file: Path, name: str) -> None:
        """A download must not replace the file of another installed model."""
        if not (file.exists() or file.is_symlink()):
            return
        for entry in self._load().entries:
            if entry.name != name and _same_file(self.path_of(entry), file):
                raise ModelError(
                    f"{file} already belongs to the installed model {entry.name!r}; "
                    f"remove it first (`localrag models remove {entry.name}`)"
                )

    def _place(self, src: Path, dest: Path, mode: ImportMode, progress: Progress | None) -> str:
        if mode not in ("copy", "symlink", "move"):
            raise ValueError(f"unknown import mode {mode!r}")
        if mode == "symlink":
            sha = sha256_file(src, progress)
            try:
                dest.symlink_to(src.resolve())
            except OSError as exc:
                raise ModelError(
                    f"cannot make a symlink {dest}: {exc.strerror or exc}; import a copy instead"
                ) from None
            return sha
        if mode == "move":
            try:
                os.rename(src, dest)  # same filesystem: instant
            except OSError:
                pass  # another filesystem: copy, then delete the original
            else:
                return sha256_file(dest, progress)
        sha = _copy_hashing(src, dest, progress)
        if mode == "move":
            src.unlink()
        return sha

    def _load(self) -> _Manifest:
        path = self.manifest_path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _Manifest(None, [])
        except OSError as exc:
            raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            return _parse_manifest(text)
        except (ValueError, TypeError) as exc:
            raise ModelError(
                f"{path} is corrupt ({exc}); fix it, or move it away and import the models "
                "again (the model files themselves are untouched)"
            ) from None

    @contextlib.contextmanager
    def _update(self) -> Iterator[_Manifest]:
        """Read, change and rewrite the manifest, holding a lock against other localrag runs."""
        make_private_dir(self.dir)
        with _locked(self.dir / (MANIFEST_FILE + ".lock")):
            manifest = self._load()
            yield manifest
            write_private_text(self.manifest_path, _dump_manifest(manifest))


def resolve_model(name_or_path: str | None, models_dir: str | Path | None = None) -> Path | None:
    """The GGUF file `ask` should load.

    A registered name, or a path to a .gguf file; with None the default model, or the only one.
    None when no model is installed at all.
    """
    registry = ModelRegistry(models_dir)
    manifest = registry._load()
    if name_or_path is None:
        entry = _implicit_choice(manifest)
        return None if entry is None else _existing_file(registry, entry)
    entry = manifest.find(name_or_path)
    if entry is not None:
        return _existing_file(registry, entry)
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix.lower() == ".gguf" or os.sep in name_or_path or "/" in name_or_path:
        if not candidate.is_file():
            raise ModelError(f"model file not found: {candidate}")
        return candidate
    raise ModelError(_unknown_model_message(name_or_path, manifest))


def _implicit_choice(manifest: _Manifest) -> ModelEntry | None:
    if manifest.default is not None:
        return manifest.find(manifest.default)
    if len(manifest.entries) == 1:
        return manifest.entries[0]
    if not manifest.entries:
        return None
    raise ModelError(
        "several language models are installed and none is the default: choose one with "
        "`localrag models default NAME` (installed: " + ", ".join(_names(manifest)) + ")"
    )


def _existing_file(registry: ModelRegistry, entry: ModelEntry) -> Path:
    path = registry.path_of(entry)
    if not path.is_file():
        raise ModelError(
            f"model {entry.name!r} is registered but its file is missing: {path}; "
            f"run `localrag models remove {entry.name}` or install it again"
        )
    return path


def _names(manifest: _Manifest) -> list[str]:
    return [e.name for e in manifest.entries]


def _unknown_model_message(name: str, manifest: _Manifest) -> str:
    if not manifest.entries:
        return (
            f"no language model named {name!r}: none is installed; run `localrag models pull` "
            "or `localrag models import FILE.gguf`"
        )
    return f"no language model named {name!r}; installed: {', '.join(_names(manifest))}"


def _latest(entries: list[ModelEntry]) -> str | None:
    """The most recently added model: the natural successor of a removed default."""
    if not entries:
        return None
    order = {e.name: i for i, e in enumerate(entries)}
    return max(entries, key=lambda e: (e.added_at, order[e.name])).name


def _entry_from(name: str, file: str, sha: str, info: GGUFInfo, source: str) -> ModelEntry:
    return ModelEntry(
        name=name,
        file=file,
        sha256=sha,
        quantization=info.file_type,
        context_length=info.context_length,
        architecture=info.architecture,
        size_bytes=info.size_bytes,
        source=source,
        added_at=_now(),
        chat=not info.is_base_model,
    )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


# -- manifest file ---------------------------------------------------------------------------------


def _parse_manifest(text: str) -> _Manifest:
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
        raise ValueError("expected an object with a list of models")
    entries = [ModelEntry.from_json(item) for item in data.get("models", [])]
    default = data.get("default")
    if default is not None and not isinstance(default, str):
        raise ValueError("'default' is not a name")
    manifest = _Manifest(default, entries)
    if default is not None and manifest.find(default) is None:
        manifest.default = None  # a hand-edited manifest naming a removed model
    return manifest


def _dump_manifest(manifest: _Manifest) -> str:
    data = {
        "version": MANIFEST_VERSION,
        "default": manifest.default,
        "models": [e.to_json() for e in manifest.entries],
    }
    return json.dumps(data, indent=2) + "\n"


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the write itself stays atomic
        yield
        return
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- files -----------------------------------------------------------------------------------------


def _undo_place(src: Path, dest: Path, mode: ImportMode) -> None:
    """Take back a placed file when registering it failed; a moved file goes back home."""
    with contextlib.suppress(OSError):
        if mode == "move":
            shutil.move(dest, src)
        else:
            dest.unlink()


def _copy_hashing(src: Path, dest: Path, progress: Progress | None) -> str:
    """Copy through a temporary name, hashing the bytes on the way; rename into place last."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
    h = hashlib.sha256()
    total = src.stat().st_size
    done = 0
    try:
        with open(src, "rb") as fin, open(tmp, "xb") as fout:
            while chunk := fin.read(_CHUNK):
                h.update(chunk)
                fout.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"cannot copy {src} to {dest}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return h.hexdigest()


# -- pulling from Hugging Face ---------------------------------------------------------------------


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/")


def hf_url(repo: str, file: str) -> str:
    return f"{hf_endpoint()}/{repo}/resolve/main/{urllib.parse.quote(file)}"


def resolve_pull_spec(spec: str | None) -> CatalogModel:
    """A catalog name, or `hf:OWNER/REPO/PATH/FILE.gguf` for any other file on the hub."""
    spec = (spec or RECOMMENDED).strip()
    if spec in CATALOG:
        return CATALOG[spec]
    if spec.startswith("hf:"):
        parts = [p for p in spec[3:].split("/") if p]
        if len(parts) < 3 or not parts[-1].lower().endswith(".gguf"):
            raise ModelError(f"expected hf:OWNER/REPO/FILE.gguf, got {spec!r}")
        file = "/".join(parts[2:])
        return CatalogModel(derive_name(parts[-1]), "/".join(parts[:2]), file, "")
    raise ModelError(
        f"unknown model {spec!r}: pull one of {', '.join(CATALOG)}, "
        "or any GGUF file on Hugging Face as hf:OWNER/REPO/FILE.gguf"
    )


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class _Fetched:
    sha256: str  # of the whole file on disk
    published_sha256: str | None
    resumed_from: int


class _RedirectLog(urllib.request.HTTPRedirectHandler):
    """Keeps the headers of each redirect: Hugging Face answers `resolve` for a large (LFS) file
    with a redirect to a CDN, and only that redirect carries the file's sha256 (X-Linked-Etag)."""

    def __init__(self) -> None:
        self.hops: list[tuple[str, email.message.Message]] = []

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        self.hops.append((req.full_url, headers))
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def published_sha256(hops: list[tuple[str, email.message.Message]], origin: str) -> str | None:
    """The sha256 Hugging Face publishes for an LFS file, from the responses on the way to it.

    X-Linked-Etag is trusted from any response; a plain ETag only from the hub's own `resolve`
    answers, since a CDN's ETag is some other hash of the same bytes.
    """
    host = urllib.parse.urlsplit(origin).netloc
    for url, headers in hops:
        parts = urllib.parse.urlsplit(url)
        keys = ["X-Linked-Etag"]
        if parts.netloc == host and "/resolve/" in parts.path:
            keys.append("ETag")
        for key in keys:
            tag = (headers.get(key) or "").strip().removeprefix("W/").strip('"').lower()
            # A 40-hex ETag is a git blob id (a small, non-LFS file), not a sha256.
            if _SHA256_RE.match(tag):
                return tag
    return None


class _Downloader:
    """One GET into `<file>.part`: appends after a 206, starts over after a 200."""

    def __init__(self, url: str, part: Path, progress: Progress | None) -> None:
        self.url = url
        self.part = part
        self.progress = progress

    def run(self) -> _Fetched:
        have = self.part.stat().st_size if self.part.is_file() else 0
        hasher = hashlib.sha256()
        if have:
            sha256_file(self.part, hasher=hasher)  # carry on the hash of what is there
        redirects = _RedirectLog()
        response = self._open(redirects, have)
        if response is None:  # 416: the .part is no prefix of this file
            return self._restart()
        with response:
            hops = [*redirects.hops, (response.url, response.headers)]
            published = published_sha256(hops, self.url)
            start = self._start_offset(response, have)
            if start is None:
                response.close()
                return self._restart()
            if start != have:
                hasher = hashlib.sha256()
            total = _total_size(response, start)
            self._check_space(total, start)
            self._receive(response, hasher, start, total)
        return _Fetched(hasher.hexdigest(), published, start)

    def _restart(self) -> _Fetched:
        self.part.unlink(missing_ok=True)
        return self.run()

    def _open(self, redirects: _RedirectLog, have: int) -> HTTPResponse | None:
        headers = {"User-Agent": _USER_AGENT}
        if have:
            headers["Range"] = f"bytes={have}-"
        request = urllib.request.Request(self.url, headers=headers)
        opener = urllib.request.build_opener(redirects)
        try:
            response: HTTPResponse = opener.open(request, timeout=_TIMEOUT_S)
            return response
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and have:
                return None
            raise ModelError(_http_error_message(exc.code, exc.reason, self.url)) from None
        except (urllib.error.URLError, OSError, HTTPException) as exc:
            raise ModelError(_offline_message(self.url, exc)) from None

    @staticmethod
    def _start_offset(response: HTTPResponse, have: int) -> int | None:
        """Where the body starts in the file: 0 for a whole file, None for a range not asked."""
        if response.status == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            return have if match and int(match.group(1)) == have else None
        return 0

    def _check_space(self, total: int | None, start: int) -> None:
        if total is None:
            return
        free = shutil.disk_usage(self.part.parent).free
        if total - start > free:
            raise ModelError(
                f"not enough disk space in {self.part.parent}: the model needs "
                f"{total - start} more bytes, {free} are free"
            )

    def _receive(self, response: HTTPResponse, hasher: Any, start: int, total: int | None) -> None:
        done = start
        with open(self.part, "ab" if start else "wb") as out:
            if self.progress:
                self.progress(done, total)
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    hasher.update(chunk)
                    done += len(chunk)
                    if self.progress:
                        self.progress(done, total)
            except (OSError, HTTPException) as exc:
                raise ModelError(_interrupted_message(done, total, exc)) from None
        # http.client returns a short body without complaint when the connection drops.
        if total is not None and done < total:
            raise ModelError(_interrupted_message(done, total, "connection closed early"))


def _total_size(response: HTTPResponse, start: int) -> int | None:
    if response.status == 206:
        match = re.search(r"/(\d+)\s*$", response.headers.get("Content-Range", ""))
        if match:
            return int(match.group(1))
    length = response.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else None


def _verify_sha256(part: Path, fetched: _Fetched, target: CatalogModel) -> str | None:
    """Compare with every published or pinned hash; a mismatch deletes the download."""
    expected = [h.lower() for h in (target.sha256, fetched.published_sha256) if h]
    for want in expected:
        if fetched.sha256 != want:
            part.unlink(missing_ok=True)
            raise ModelError(
                f"the download of {target.repo}/{target.file} is corrupt: its sha256 is "
                f"{fetched.sha256}, expected {want}; the partial file was deleted, pull again"
            )
    return expected[0] if expected else None


def _offline_message(url: str, exc: BaseException) -> str:
    reason = getattr(exc, "reason", exc)
    return (
        f"cannot reach {urllib.parse.urlsplit(url).netloc} ({reason}). `localrag models pull` "
        "needs network access; on a machine without it, download the .gguf file elsewhere and "
        "run `localrag models import FILE.gguf`"
    )


def _interrupted_message(done: int, total: int | None, reason: object) -> str:
    of = f" of {total}" if total is not None else ""
    return (
        f"the download stopped after {done}{of} bytes ({reason}); run the same "
        "`localrag models pull` again to resume where it stopped"
    )


def _http_error_message(code: int, reason: str, url: str) -> str:
    if code == 404:
        return f"not found: {url} (HTTP 404); check the repository and file name"
    if code in (401, 403):
        return (
            f"{url} needs a Hugging Face login (HTTP {code}: a gated or private repository); "
            "download the file in a browser and run `localrag models import FILE.gguf`"
        )
    return f"the server answered HTTP {code} {reason} for {url}"
