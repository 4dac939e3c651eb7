"""Install a cross-encoder reranker for offline use: `localrag models import-reranker SOURCE`.

SOURCE is a folder fetched on a connected machine. Two layouts are taken:
- an ONNX cross-encoder, as the hub carries many of them (`model.onnx` or `onnx/model.onnx`,
  with `tokenizer.json`): copied as it is;
- a Hugging Face sequence-classification model (`config.json`, weights, tokenizer): exported
  to ONNX with torch (the `export` extra), and the export checked against torch's own scores.

Either way the model must score two test pairs to finite numbers before it is installed, and
the folder is built under a hidden name and renamed into place last, as embedders are.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from localrag import config
from localrag.errors import EmbedderError
from localrag.hashing import sha256_file
from localrag.models.embedder_import import (
    EXPORT_HINT,
    _install,
    _quiet_export,
    _require_export_deps,
    _staging_dir,
    model_input_names,
    trace_to_onnx,
)
from localrag.reranker import (
    ONNX_FILE,
    TOKENIZER_FILE,
    CrossEncoder,
    RerankerManifest,
    rerankers_dir,
)

ONNX_LOCATIONS = (ONNX_FILE, f"onnx/{ONNX_FILE}")
TOKENIZER_EXTRAS = ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")
DEFAULT_MAX_LENGTH = 512
# Export parity: the ONNX scores against torch's on the check pairs.
PARITY_ATOL = 1e-3
CHECK_PAIRS = (
    ("when was the invoice paid?", "The March invoice was paid twice, on the 3rd and the 9th."),
    ("when was the invoice paid?", "A quiet harbour at dawn, gulls over the water."),
)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _max_length(source: Path) -> int:
    """The longest pair the model takes: its tokenizer's limit, capped by its position table."""
    limits = []
    value = _read_json(source / "tokenizer_config.json").get("model_max_length")
    if isinstance(value, int) and 8 <= value <= 100_000:  # HF writes 1e30 for "no limit"
        limits.append(value)
    value = _read_json(source / "config.json").get("max_position_embeddings")
    if isinstance(value, int) and value >= 8:
        limits.append(value)
    return min(limits) if limits else DEFAULT_MAX_LENGTH


def _export(source: Path, onnx_path: Path) -> None:
    """A Hugging Face sequence-classification folder to ONNX, checked against torch."""
    torch, transformers = _require_export_deps()
    with _quiet_export():
        try:
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                str(source), local_files_only=True, attn_implementation="eager"
            )
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(source), local_files_only=True
            )
        except Exception as exc:
            raise EmbedderError(f"Cannot load a cross-encoder from {source}: {exc}") from exc
        names = model_input_names(tokenizer)
        example = tokenizer(
            [q for q, _ in CHECK_PAIRS],
            [p for _, p in CHECK_PAIRS],
            padding=True,
            return_tensors="pt",
        )
        try:
            wrapper = trace_to_onnx(model, "logits", example, names, onnx_path, {0: "batch"})
        except Exception as exc:
            raise EmbedderError(f"Exporting {source} to ONNX failed: {exc}") from exc
        with torch.no_grad():
            expected = wrapper(**{n: example[n] for n in names}).numpy()
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: example[n].numpy() for n in names})[0]
    if not np.allclose(got, expected, atol=PARITY_ATOL):
        raise EmbedderError(
            f"The ONNX export of {source} does not match the model (largest difference "
            f"{float(np.abs(got - expected).max()):.2g}); nothing was installed."
        )


def import_reranker(source: Path, dest_root: Path | None = None, name: str | None = None) -> Path:
    """Install the cross-encoder in `source` as `name` (default: the folder's name)."""
    source = Path(source).expanduser().resolve()
    dest_root = dest_root or rerankers_dir()
    if not (source / TOKENIZER_FILE).is_file():
        raise EmbedderError(
            f"{source} has no {TOKENIZER_FILE}: a reranker folder needs the model's fast "
            "tokenizer file beside its weights."
        )
    onnx_source = next((source / p for p in ONNX_LOCATIONS if (source / p).is_file()), None)
    has_weights = any((source / w).is_file() for w in ("model.safetensors", "pytorch_model.bin"))
    if onnx_source is None and not ((source / "config.json").is_file() and has_weights):
        raise EmbedderError(
            f"{source} holds no cross-encoder: expected {' or '.join(ONNX_LOCATIONS)}, or a "
            "Hugging Face model (config.json with model.safetensors) to export "
            f"({EXPORT_HINT})."
        )
    name = name or source.name
    folder = config.embedder_folder_name(name)
    with _staging_dir(dest_root, folder) as tmp:
        if onnx_source is not None:
            shutil.copyfile(onnx_source, tmp / ONNX_FILE)
        else:
            _export(source, tmp / ONNX_FILE)
        for filename in (TOKENIZER_FILE, *TOKENIZER_EXTRAS):
            if (source / filename).is_file():
                shutil.copyfile(source / filename, tmp / filename)
        manifest = RerankerManifest(name, _max_length(source), sha256_file(tmp / ONNX_FILE))
        manifest.write(
            tmp,
            {
                "source": str(source),
                "exported": onnx_source is None,
                "imported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
        scores = CrossEncoder(tmp).score(CHECK_PAIRS[0][0], [p for _, p in CHECK_PAIRS])
        if not np.all(np.isfinite(scores)):
            raise EmbedderError(f"The reranker in {source} scores pairs as {scores}: not usable.")
        final = dest_root / folder
        _install(tmp, final)
    return final
