"""Where an embedder's time goes, per kind of operation: why int8 is not twice as fast.

    python bench/profile_embedder.py --db INDEX.db [--embedder NAME ...] [--passages N]
        [--threads N]

Takes N passages of an existing index (a fixed random sample, heading included, as indexing
embeds them), sorts them by length and runs them in batches of the embedder's batch size, as
`FastEmbedder.embed_passages` does, through onnxruntime with profiling on (same session
options as the embedder). Prints, per embedder, the kernel time of each kind of operation
(share and milliseconds per passage), one warm-up pass left out. Dynamic int8 quantization
only speeds up the weight matrix products; what stays float (the attention scores and their
softmax, the mask and bias additions, LayerNorm, GELU, transposes) bounds the speed-up.
"""

from __future__ import annotations

import argparse
import collections
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe as describe_machine  # noqa: E402
from localrag.documents import passage_with_heading  # noqa: E402
from localrag.embedder import DEFAULT_BATCH_SIZE, load_embedder  # noqa: E402

# Operation kinds, by onnxruntime op type (after its graph optimizations).
KINDS = {
    "int8 weight products": {
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "MatMulInteger",
        "DynamicQuantizeLinear",
        "QAttention",
    },
    "float matrix products (scores, kept-float weights)": {"MatMul", "FusedMatMul", "Gemm"},
    "softmax": {"Softmax"},
    "additions (bias, mask, residual)": {"Add", "BiasAdd", "Where"},
    "LayerNorm and GELU": {
        "LayerNormalization",
        "SkipLayerNormalization",
        "SimplifiedLayerNormalization",
        "Gelu",
        "BiasGelu",
        "FastGelu",
        "Erf",
    },
    "reshapes and transposes": {"Transpose", "Reshape", "Concat", "Gather", "Unsqueeze"},
}


def sample_passages(db: Path, count: int) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute("SELECT heading, text FROM chunks GROUP BY embedding_id").fetchall()
    conn.close()
    rng = np.random.default_rng(0)
    picked = rng.choice(len(rows), size=min(count, len(rows)), replace=False)
    return [passage_with_heading(rows[i][0], rows[i][1]) for i in picked]


def profile(name: str, texts: list[str], threads: int, work: Path) -> dict[str, float]:
    """Kernel microseconds per op type for one pass over `texts`."""
    import onnxruntime as ort

    embedder = load_embedder(name, threads=threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = True
    options.profile_file_prefix = str(work / Path(name).name)
    session = ort.InferenceSession(
        str(embedder.model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    inputs = {i.name for i in session.get_inputs()}
    tokenizer = embedder._tokenizer  # the embedder's own truncation and padding
    lengths = embedder.count_many(texts)
    order = sorted(range(len(texts)), key=lambda i: lengths[i], reverse=True)
    batches = []
    for start in range(0, len(order), DEFAULT_BATCH_SIZE):
        batch = [texts[i] for i in order[start : start + DEFAULT_BATCH_SIZE]]
        encodings = tokenizer.encode_batch(batch)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        batches.append(feeds)
    for _pass in ("warm-up", "measured"):
        for feeds in batches:
            session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    # Only the second pass counts: it starts with the run after the warm-up's last one.
    runs = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    measured_from = runs[len(batches)]
    per_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if (
            event.get("cat") == "Node"
            and event["name"].endswith("_kernel_time")
            and event["ts"] >= measured_from
        ):
            per_op[event["args"]["op_name"]] += event["dur"]
    return dict(per_op)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", type=Path, required=True, help="an index to take passages from")
    parser.add_argument(
        "--embedder",
        action="append",
        default=None,
        help="repeatable (default: all-MiniLM-L6-v2 and all-MiniLM-L6-v2-int8)",
    )
    parser.add_argument("--passages", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    names = args.embedder or ["all-MiniLM-L6-v2", "all-MiniLM-L6-v2-int8"]
    texts = sample_passages(args.db, args.passages)
    print(f"# {describe_machine()}")
    print(f"# {len(texts)} passages of {args.db.name}, {args.threads} threads\n")
    with tempfile.TemporaryDirectory() as tmp:
        profiles = {name: profile(name, texts, args.threads, Path(tmp)) for name in names}
    print("| operations | " + " | ".join(f"{n}: share | ms/passage" for n in names) + " |")
    print("|---|" + "---|---|" * len(names))
    kinds = {**KINDS, "other": set()}
    for kind, ops in kinds.items():
        cells = []
        for name in names:
            per_op = profiles[name]
            total = sum(per_op.values())
            known = set().union(*KINDS.values())
            micros = sum(v for op, v in per_op.items() if (op in ops if ops else op not in known))
            cells.append(f"{100 * micros / total:.1f} % | {micros / 1000 / len(texts):.2f}")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    totals = [sum(profiles[n].values()) / 1000 / len(texts) for n in names]
    print("| **all kernels** | " + " | ".join(f"100 % | {t:.2f}" for t in totals) + " |")
    for name in names:
        top = sorted(profiles[name].items(), key=lambda kv: -kv[1])[:8]
        print(f"\n{name}: " + ", ".join(f"{op} {v / 1000 / len(texts):.2f}" for op, v in top))


if __name__ == "__main__":
    main()
