"""Cross-encoder reranking: a second, closer look at the best few passages of a search.

An embedder reads the question and each passage apart and compares two vectors; a cross-encoder
reads the question and one passage together and scores how well the passage answers it. That
is far more accurate and far slower (one model call per passage), so it only reorders the first
`retrieval.RERANK_CANDIDATES` passages hybrid search found.

A reranker folder (made by `localrag models import-reranker`, `models/reranker_import.py`)
holds `model.onnx` (a sequence-classification model: one relevance logit per pair, or two
classes), the tokenizer files and `localrag-reranker.json` with its name, trained length and the
sha256 of `model.onnx`. Like the embedder it runs in onnxruntime from the folder alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from localrag import config
from localrag.embedder import _pad_token, check_model_file, default_threads
from localrag.errors import EmbedderError

if TYPE_CHECKING:
    from localrag.answer import AnswerSettings

MANIFEST_FILE = "localrag-reranker.json"
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
IMPORT_HINT = "localrag models import-reranker FOLDER"
# What `--reranker` and the `[answer] reranker` setting take to mean "no reranker".
NO_RERANKER = "none"
# Pairs per model call: a pair is up to max_seq_length tokens, so this bounds memory.
BATCH_PAIRS = 16


class Reranker(Protocol):
    name: str

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class RerankerManifest:
    name: str
    max_seq_length: int
    fingerprint: str  # sha256 of model.onnx

    @classmethod
    def read(cls, model_dir: Path) -> RerankerManifest:
        path = model_dir / MANIFEST_FILE
        if not path.is_file():
            raise EmbedderError(
                f"{model_dir} is not a localrag reranker: {MANIFEST_FILE} is missing. "
                f"Import the model with `{IMPORT_HINT}`."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            manifest = cls(
                name=str(data["name"]),
                max_seq_length=int(data["max_seq_length"]),
                fingerprint=str(data["onnx_sha256"]).lower(),
            )
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise EmbedderError(
                f"Cannot read {path} ({exc}): import the model again with `{IMPORT_HINT}`."
            ) from exc
        if not manifest.name or manifest.max_seq_length < 8 or len(manifest.fingerprint) != 64:
            raise EmbedderError(f"{path} is invalid: import the model again with `{IMPORT_HINT}`.")
        return manifest

    def write(self, model_dir: Path, extra: dict[str, Any]) -> None:
        fields = {
            "name": self.name,
            "max_seq_length": self.max_seq_length,
            "onnx_sha256": self.fingerprint,
            "kind": "cross-encoder",
        }
        text = json.dumps(fields | extra, indent=2) + "\n"
        (model_dir / MANIFEST_FILE).write_text(text, encoding="utf-8")


def relevance(logits: np.ndarray) -> np.ndarray:
    """One score per pair from a classifier's output: its single logit, or for two classes
    the log-odds of "relevant" (the second) over "not relevant"."""
    if logits.ndim == 1:
        return logits.astype(np.float32)
    if logits.ndim == 2 and logits.shape[1] == 1:
        return logits[:, 0].astype(np.float32)
    if logits.ndim == 2 and logits.shape[1] == 2:
        return (logits[:, 1] - logits[:, 0]).astype(np.float32)
    raise EmbedderError(
        f"the reranker gives outputs of shape {logits.shape}: expected one relevance logit "
        "per pair (or two classes); is it a cross-encoder?"
    )


class CrossEncoder:
    """A Reranker on onnxruntime, loaded offline from a localrag reranker folder."""

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        model_dir = Path(model_dir).expanduser().resolve()
        if not model_dir.is_dir():
            raise EmbedderError(f"Reranker folder {model_dir} does not exist.")
        manifest = RerankerManifest.read(model_dir)
        onnx_path = model_dir / ONNX_FILE
        for path in (onnx_path, model_dir / TOKENIZER_FILE):
            if not path.is_file():
                raise EmbedderError(
                    f"The reranker in {model_dir} is incomplete: {path.name} is missing. "
                    f"Import it again with `{IMPORT_HINT}`."
                )
        check_model_file(
            onnx_path, manifest.fingerprint, f"Import the model again with `{IMPORT_HINT}`."
        )
        self.model_dir = model_dir
        self.name = manifest.name
        self.fingerprint = manifest.fingerprint

        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        except Exception as exc:
            raise EmbedderError(
                f"Cannot load the reranker in {model_dir}: {exc}. "
                f"Import it again with `{IMPORT_HINT}`."
            ) from exc
        # The question is short and whole; the passage is what gets cut to fit.
        tokenizer.enable_truncation(max_length=manifest.max_seq_length, strategy="only_second")
        pad_token, pad_id = _pad_token(model_dir, tokenizer)
        tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
        self._tokenizer = tokenizer
        self._inputs = {i.name for i in self._session.get_inputs()}

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """float32 (n,): how well each passage answers the query, higher is better."""
        out = np.empty(len(passages), dtype=np.float32)
        for start in range(0, len(passages), BATCH_PAIRS):
            batch = [(query, p) for p in passages[start : start + BATCH_PAIRS]]
            encodings = self._tokenizer.encode_batch(batch)
            feeds = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            }
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
            logits = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)
            out[start : start + len(batch)] = relevance(logits)
        return out


def rerankers_dir() -> Path:
    return config.models_dir() / "rerankers"


def load_reranker(name_or_dir: str | Path) -> CrossEncoder:
    """An installed reranker by name (its folder under models/rerankers), or a folder."""
    candidate = Path(name_or_dir).expanduser()
    if candidate.is_dir():
        return CrossEncoder(candidate)
    folder = rerankers_dir() / config.embedder_folder_name(str(name_or_dir))
    if not folder.is_dir():
        installed = sorted(
            p.name for p in rerankers_dir().glob("*") if p.is_dir() and not p.name.startswith(".")
        )
        have = f" Installed: {', '.join(installed)}." if installed else ""
        raise EmbedderError(
            f"No reranker named {name_or_dir!r} in {rerankers_dir()}.{have} "
            f"Import one with `{IMPORT_HINT}`: a cross-encoder folder (ONNX, or a "
            "Hugging Face model with the export extra) fetched on a connected machine."
        )
    return CrossEncoder(folder)


def configured_reranker(
    name: str | None, settings: AnswerSettings | None = None
) -> CrossEncoder | None:
    """The reranker `--reranker NAME` asks for, else the one the answer settings name
    (config.toml's `[answer] reranker`); None when neither names one, or it says "none"."""
    if name is not None:
        return reranker_named(name)
    if settings is None:
        from localrag.answer import AnswerSettings

        settings = AnswerSettings.from_config()
    try:
        return reranker_named(settings.reranker)
    except EmbedderError as exc:
        raise EmbedderError(f"config.toml [answer] reranker: {exc}") from exc


def reranker_named(name: str) -> CrossEncoder | None:
    """`load_reranker(name)`, or None for "" and "none"."""
    if name.strip().lower() in ("", NO_RERANKER):
        return None
    return load_reranker(name)
