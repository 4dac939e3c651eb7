"""Make an int8 variant of an installed embedder: `localrag models quantize-embedder NAME`.

onnxruntime's dynamic quantization stores the weights of the model's matrix multiplications as
int8 (one scale per output channel) and quantizes their inputs to uint8 at run time, one scale
per tensor; everything else (embeddings, LayerNorm, softmax, the attention score products,
GELU) stays float32, and so do the few MatMuls `_keep_float` picks. On 2 cores that embeds
about 1.4× as fast as the float32 model and indexes about 1.3× as fast
(bench/bench_index.py --only-int8), for a cosine of 0.986-1.0 with the float32 vectors
(bench/bench_int8_quality.py).

Because the activation scale is computed per tensor, and a tensor holds a whole batch, an
int8 vector depends a little on the other texts of its batch (cosine ~0.995 between the same
text embedded in two batches): vectors are comparable, not bit-reproducible.

The result is a model of its own: another folder, another name (`…-int8`), another
`onnx_sha256`, so an index built with one can never be searched or extended with the other
(the store compares fingerprints); `localrag index --reembed` moves an index across. Before it
is installed its vectors are compared with the float32 model's on CHECK_TEXTS: every cosine
must reach MIN_COSINE, or nothing is installed.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from localrag import config
from localrag.embedder import (
    ONNX_FILE,
    TOKENIZER_FILES,
    FastEmbedder,
    read_manifest,
    resolve_embedder_dir,
)
from localrag.errors import EmbedderError
from localrag.hashing import sha256_file
from localrag.models.embedder_import import (
    EXPORT_HINT,
    Progress,
    _base_manifest,
    _folder_name,
    _install,
    _say,
    _staging_dir,
    _write_manifest,
)

INT8_SUFFIX = "-int8"
# Each check text's int8 vector against its float32 vector. Measured on 286 real passages of
# the bench corpora (MiniLM): worst 0.9933 with the rule in _keep_float, 0.9875 with every
# weight in int8, 0.86 with one scale per weight matrix instead of per channel.
MIN_COSINE = 0.99
QUANTIZATION = {
    "method": "onnxruntime dynamic quantization",
    "weights": "int8, symmetric, per output channel",
    "activations": "uint8, one scale per tensor, computed at run time",
    "float32": "embeddings, LayerNorm, softmax, attention scores, and the first half of the "
    "layers' feed-forward down-projections",
}

# Real kinds of text a personal index holds: prose, mail, code, configuration, tables, lists,
# numbers, other languages, short questions, and one past the trained length (truncation).
CHECK_TEXTS: tuple[str, ...] = (
    "The lease may be terminated by either party with three months' written notice, "
    "delivered to the address given in clause 14.",
    "Hi Sam, the invoice from March was paid twice, so the supplier has issued a credit note "
    "for the difference. Can you check it against the April statement? Thanks, Priya",
    "def moving_average(values, window):\n    total = sum(values[:window])\n"
    "    yield total / window\n    for i in range(window, len(values)):\n"
    "        total += values[i] - values[i - window]\n        yield total / window",
    "SELECT customer_id, sum(amount) AS spent FROM orders WHERE created_at >= "
    "'2024-01-01' GROUP BY customer_id HAVING sum(amount) > 1000 ORDER BY spent DESC;",
    "[server]\nport = 8443\nworkers = 4\n\n[database]\nurl = "
    '"postgresql://app@localhost/app"\npool_size = 20\ntimeout_s = 30',
    "| quarter | revenue | costs | margin |\n|---|---|---|---|\n| Q1 | 1.2 M | 0.9 M | 25 % "
    "|\n| Q2 | 1.5 M | 1.0 M | 33 % |\n| Q3 | 1.1 M | 1.0 M | 9 % |",
    "Preheat the oven to 200 °C. Cut the squash into wedges, toss with olive oil, cumin and "
    "salt, and roast for 35 minutes, turning once, until the edges caramelise.",
    "Symptoms of iron deficiency include tiredness, shortness of breath, pale skin and heart "
    "palpitations; a blood test measuring ferritin confirms it.",
    "git rebase -i HEAD~5 opens an editor listing the last five commits; change 'pick' to "
    "'squash' to fold a commit into the one above it.",
    "Photosynthesis converts light energy into chemical energy: chlorophyll absorbs red and "
    "blue light, and the Calvin cycle fixes carbon dioxide into sugars.",
    "Die Kündigungsfrist beträgt drei Monate zum Quartalsende und muss schriftlich erfolgen.",
    "Le rendez-vous chez le dentiste est déplacé à jeudi prochain, 14 h 30, même adresse.",
    "El informe trimestral muestra un aumento de las ventas del 12 % en la región norte.",
    "Meeting notes 2024-03-14: agreed to move the launch to May; Dana owns the migration "
    "plan; open question on the EU data residency requirement.",
    "TypeError: Cannot read properties of undefined (reading 'map') at renderList "
    "(src/components/List.tsx:42:18)",
    "Flight LH 2471 departs Munich at 07:15 from terminal 2, gate K14; boarding closes "
    "20 minutes before departure.",
    "how do I reset my password",
    "what notice period does the lease require?",
    "vacuum full locks the table",
    "Chapter 3. The crew reached the ridge at dusk. Below them the valley was already dark, "
    "the river a thin silver line, and somewhere a dog barked twice and was quiet.",
    "Warranty: the manufacturer repairs or replaces defective parts for 24 months from the "
    "date of purchase; damage caused by misuse, accidents or unauthorised repairs is excluded.",
    "- milk\n- eggs (12)\n- sourdough bread\n- coffee beans, medium roast\n- batteries AA x4",
    "Total due: $1,284.50 (subtotal $1,180.00, tax 8.85 % $104.50). Payment terms: net 30. "
    "IBAN DE89 3704 0044 0532 0130 00.",
    "The patient was prescribed 500 mg amoxicillin three times daily for seven days and "
    "advised to return if the fever persists beyond 48 hours.",
    "In 1969 Apollo 11 landed in the Sea of Tranquility; Armstrong and Aldrin spent about two "
    "and a half hours outside the lunar module.",
    "Kubernetes restarts a container whose liveness probe fails; a failing readiness probe "
    "only removes the pod from the service's endpoints.",
    "東京の会議は来週の火曜日に延期されました。",
    " ".join(["Retrieval quality depends on how passages are chunked and embedded."] * 40),
)


@dataclass(frozen=True)
class QuantizedEmbedder:
    """What `quantize_embedder` installed, and how close it came to the float32 model."""

    path: Path
    name: str
    min_cosine: float
    mean_cosine: float
    kept_float: tuple[str, ...]


def default_int8_name(float_name: str) -> str:
    """The int8 model's identity: the float model's name with `-int8`."""
    return f"{float_name}{INT8_SUFFIX}"


def _require_quantizer() -> Any:
    """onnxruntime's quantizer needs the `onnx` package, which the core install lacks."""
    try:
        import onnx  # noqa: F401
        from onnxruntime import quantization
    except ImportError as exc:
        raise EmbedderError(
            f"Making an int8 embedder needs the onnx package ({exc.name} is missing). "
            f"Install it with `{EXPORT_HINT}` or `pip install onnx`."
        ) from exc
    return quantization


def _keep_float(model: Any) -> list[str]:
    """The MatMuls left in float32: the feed-forward down-projections of the first half of
    the layers.

    Why these: their input is the GELU output (1536 values a token in MiniLM) whose few large
    outliers set the one uint8 scale of the whole tensor, so the rest lose most precision, and
    an error made early is carried through every later layer. Found by leaving each group out
    in turn (bench corpora, MiniLM): all int8 gave a worst cosine of 0.9875; these three
    float gave 0.9933 and ~1.4× the float32 speed; all six float 0.9944 and ~1.3×.
    A down-projection is recognised by shape, not by name (exporters name nodes differently):
    a constant weight matrix with more rows than columns, in graph (= layer) order.
    """
    weights = {init.name: tuple(init.dims) for init in model.graph.initializer}
    down = [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul"
        and len(node.input) == 2
        and len(weights.get(node.input[1], ())) == 2
        and weights[node.input[1]][0] > weights[node.input[1]][1]
    ]
    return down[: (len(down) + 1) // 2]


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantizer logs advice (pre-processing) through the root logger: not for users."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def write_int8_onnx(float_onnx: Path, int8_onnx: Path) -> list[str]:
    """Quantize `float_onnx` into `int8_onnx`; returns the MatMuls kept in float32.

    The same input gives the same bytes, so two users quantizing one model get one
    fingerprint.
    """
    quantization = _require_quantizer()
    import onnx

    try:
        model = onnx.load(str(float_onnx))
    except Exception as exc:
        raise EmbedderError(f"Cannot read {float_onnx} as an ONNX model: {exc}") from exc
    keep = _keep_float(model)
    del model  # the quantizer loads the file itself (with shape inference)
    with _quiet_quantizer():
        try:
            quantization.quantize_dynamic(
                model_input=float_onnx,
                model_output=int8_onnx,
                # MatMul only: quantizing the token embedding table (Gather) as well shrank
                # the file by 30 MB but cost fidelity (worst cosine 0.9917) and no speed.
                op_types_to_quantize=["MatMul"],
                per_channel=True,  # one scale per tensor: worst cosine 0.86
                reduce_range=False,  # 7-bit weights measured worse (0.9826) and no faster
                weight_type=quantization.QuantType.QInt8,
                nodes_to_exclude=keep,
            )
        except Exception as exc:
            raise EmbedderError(f"Quantizing {float_onnx} failed: {exc}") from exc
    return keep


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two batches of unit vectors (the embedder normalises)."""
    return np.asarray(np.sum(a * b, axis=1), dtype=np.float64)


def quantize_embedder(
    source: str | Path | None = None,
    dest_root: Path | None = None,
    name: str | None = None,
    *,
    check_texts: Sequence[str] = CHECK_TEXTS,
    min_cosine: float = MIN_COSINE,
    progress: Progress | None = None,
) -> QuantizedEmbedder:
    """Install the int8 variant of the float32 embedder `source` (a name or a folder; default
    the default embedder) under dest_root. `name` is its identity and folder (default: the
    source's name with `-int8`). Built in a hidden staging folder and renamed into place only
    after the fidelity check passes, so a failure leaves nothing that looks installed.
    """
    dest_root = Path(dest_root) if dest_root is not None else config.embedders_dir()
    source_dir = resolve_embedder_dir(source)
    source_manifest = read_manifest(source_dir)
    if source_manifest.get("quantization"):
        raise EmbedderError(
            f"{source_dir} is already a quantized model (made from "
            f"{source_manifest.get('quantized_from', {}).get('name', 'another model')}); "
            "quantize the float32 model instead."
        )
    # Loads, checks model.onnx against its manifest's sha256, and runs once: the int8 file is
    # only ever made from the genuine float32 one.
    float_embedder = FastEmbedder(source_dir)
    float_name = float_embedder.identity.name
    identity = name or default_int8_name(float_name)
    folder = _folder_name(identity)
    if (dest_root / folder).resolve() == source_dir.resolve():
        raise EmbedderError(f"{identity!r} would replace the float32 model it is made from.")

    with _staging_dir(dest_root, folder) as tmp:
        _say(progress, f"Quantizing {float_name} to int8")
        kept = write_int8_onnx(source_dir / ONNX_FILE, tmp / ONNX_FILE)
        for filename in TOKENIZER_FILES:  # the same tokenizer, so the same passages
            if (source_dir / filename).is_file():
                shutil.copyfile(source_dir / filename, tmp / filename)
        manifest = _base_manifest(
            identity,
            float_embedder.identity.dim,
            int(source_manifest["max_seq_length"]),
            str(source_manifest.get("pooling", "mean")),
            f"int8 of {float_name}",
            sha256_file(tmp / ONNX_FILE),
        )
        manifest["weights_sha256"] = source_manifest.get("weights_sha256")
        manifest["quantized_from"] = {
            "name": float_name,
            "onnx_sha256": float_embedder.identity.fingerprint,
            "folder": source_dir.name,
        }
        manifest["quantization"] = dict(
            QUANTIZATION, kept_float=kept, onnxruntime=_onnxruntime_version()
        )
        _write_manifest(tmp, manifest)

        _say(progress, f"Comparing its vectors with {float_name}'s on {len(check_texts)} texts")
        texts = list(check_texts)
        int8_embedder = FastEmbedder(tmp, threads=float_embedder.threads, verify=False)
        cosines = _cosines(
            int8_embedder.embed_passages(texts), float_embedder.embed_passages(texts)
        )
        del int8_embedder  # release the file before the folder is renamed or removed
        worst = int(np.argmin(cosines))
        if not cosines[worst] >= min_cosine:
            raise EmbedderError(
                f"The int8 model's vectors are too far from {float_name}'s: cosine "
                f"{cosines[worst]:.4f} < {min_cosine} on the text {texts[worst][:60]!r}. "
                "Nothing was installed; keep using the float32 model."
            )
        manifest["int8_check"] = {
            "texts": len(texts),
            "min_cosine": round(float(cosines[worst]), 6),
            "mean_cosine": round(float(cosines.mean()), 6),
            "required": min_cosine,
        }
        _write_manifest(tmp, manifest)
        final = dest_root / folder
        _install(tmp, final)
    _say(progress, f"Installed {identity} in {final}")
    return QuantizedEmbedder(
        path=final,
        name=identity,
        min_cosine=float(cosines[worst]),
        mean_cosine=float(cosines.mean()),
        kept_float=tuple(kept),
    )


def _onnxruntime_version() -> str:
    """Recorded in the manifest: which quantizer made the file."""
    import onnxruntime

    return str(onnxruntime.__version__)
