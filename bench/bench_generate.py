"""Generation benchmarks: `localrag ask` against raw llama-cpp-python on the same GGUF.

    python bench/bench_generate.py [--model FILE.gguf] [--tokens 128] [--rounds 3] [--ctx 2048]

Without --model it builds the test suite's Qwen2-family model with random weights at Q4_K_M
(tiny by default; --hidden 1536 --intermediate 8960 --layers 4 gives Qwen2.5-1.5B's layer shape),
which is enough for the ratio (both sides run the same kernels) but not for absolute speeds.

Prints (and writes to bench/results/generate.json):
  1. decode tokens/s of an answer streamed by `Answerer.ask` over a small index, as a ratio of
     raw `Llama.create_completion(stream=True)` on the identical prompt tokens and settings
     (greedy, so both produce the same tokens); rounds interleaved, medians (target ≥ 0.95)
  2. time to first token of `ask` (retrieval + packing + prompt processing) and of raw
  3. prompt processing for a full context: a prompt filling the window but the answer budget
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localrag.answer import Answerer, AnswerSettings  # noqa: E402
from localrag.embedder import load_embedder  # noqa: E402
from localrag.indexer import Indexer  # noqa: E402
from localrag.llm import GenerationStats, LLMSettings, LocalLLM, _model_params  # noqa: E402
from localrag.store import Store  # noqa: E402

QUESTION = "When are the quarterly backup tapes rotated and who checks them?"


def write_corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(40):
        (folder / f"policy-{i:02}.md").write_text(
            f"# Policy {i}\n\n"
            + "\n\n".join(
                f"Backup tapes for site {i} are rotated every quarter on day {d + 1}; the "
                f"operations lead checks the rotation log and signs section {d}."
                for d in range(6)
            )
        )


def raw_generate(llama, tokens: list[int], max_tokens: int) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """(time to first token, decode tokens/s, tokens) for raw llama-cpp-python streaming."""
    llama.reset()
    started = time.perf_counter()
    first = None
    count = 0
    for chunk in llama.create_completion(
        prompt=tokens, max_tokens=max_tokens, temperature=0.0, stream=True
    ):
        if chunk["choices"][0]["finish_reason"] is None:  # the same count as GenerationStats
            count += 1
        if first is None:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    assert first is not None
    return first, (count - 1) / (total - first), count


def ask_generate(answerer: Answerer) -> tuple[float, float, int]:
    """(time to first token incl. retrieval, decode tokens/s, tokens)."""
    assert answerer.llm is not None
    answerer.llm.llama.reset()
    started = time.perf_counter()
    answer = answerer.ask(QUESTION)
    stream = iter(answer)
    next(stream)
    first = time.perf_counter() - started
    for _ in stream:
        pass
    stats: GenerationStats = answer.stats  # type: ignore[assignment]
    total = time.perf_counter() - started
    return first, (stats.generated_tokens - 1) / (total - first), stats.generated_tokens


def random_model(work: Path, hidden: int, intermediate: int, layers: int) -> Path:
    """The suite's random-weight Qwen2-family model, at the asked shape, as Q4_K_M."""
    from tests.helpers.llm import TinySpec, build_tiny_ggufs, write_tiny_model

    heads = max(4, hidden // 128)
    spec = TinySpec(
        hidden=hidden, intermediate=intermediate, layers=layers, heads=heads, kv_heads=2
    )
    return build_tiny_ggufs(write_tiny_model(work / "random-hf", spec), work / "gguf")["q4_k_m"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None)
    # Without --model: a random model; Qwen2.5-1.5B's layer shape is 1536 / 8960 (28 layers).
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--intermediate", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="localrag-bench-gen-"))
    model = args.model or random_model(work, args.hidden, args.intermediate, args.layers)
    embedder = load_embedder(None)
    write_corpus(work / "docs")
    settings = LLMSettings(
        n_ctx=args.ctx, max_tokens=args.tokens, temperature=0.0, n_threads=args.threads
    )
    llm = LocalLLM.load(model, settings)
    print(f"model {model.name}: {llm.info.file_type}, n_ctx {llm.n_ctx}, repack {llm.repack}")
    import llama_cpp

    with _model_params(use_extra_bufts=llm.repack):  # the same settings, raw
        raw = llama_cpp.Llama(
            model_path=str(model),
            n_ctx=llm.n_ctx,
            n_batch=min(512, llm.n_ctx),
            n_threads=args.threads,
            seed=0,
            verbose=False,
        )
    results: dict = {"model": str(model), "file_type": llm.info.file_type, "n_ctx": llm.n_ctx}
    with Store.open(work / "index.db") as store:
        Indexer(store, embedder).index([work / "docs"])
        answerer = Answerer(store, embedder, llm, AnswerSettings(min_similarity=0.0))
        packed_tokens = None
        ours, theirs, ttft_ours, ttft_raw = [], [], [], []
        for _ in range(args.rounds):
            first, rate, count = ask_generate(answerer)
            ours.append(rate)
            ttft_ours.append(first)
            if packed_tokens is None:
                from localrag.prompt import pack_prompt

                passages = [
                    answerer._passage(r)
                    for r in answerer.retriever.search(QUESTION, answerer.settings.candidates)
                ]
                packed_tokens = pack_prompt(
                    llm, QUESTION, passages, max_answer_tokens=args.tokens
                ).tokens
            r_first, r_rate, r_count = raw_generate(raw, packed_tokens, args.tokens)
            theirs.append(r_rate)
            ttft_raw.append(r_first)
            print(f"round: ask {rate:.1f} tok/s ({count}), raw {r_rate:.1f} tok/s ({r_count})")
        results["decode"] = {
            "ask_tokens_per_s": statistics.median(ours),
            "raw_tokens_per_s": statistics.median(theirs),
            "ratio": statistics.median(ours) / statistics.median(theirs),
            "target_ratio": 0.95,
            "prompt_tokens": len(packed_tokens or []),
        }
        results["first_token"] = {
            "ask_s": statistics.median(ttft_ours),
            "raw_same_prompt_s": statistics.median(ttft_raw),
        }
    # A prompt filling the window but the answer budget: prompt-processing speed.
    filler = " ".join(f"word{i % 97}" for i in range(llm.n_ctx * 2))
    full = llm.chat_prompt([{"role": "user", "content": llm.truncate(filler, llm.n_ctx - 80)}])
    llm.llama.reset()
    started = time.perf_counter()
    llm.complete(full.tokens, max_tokens=1, temperature=0.0)
    elapsed = time.perf_counter() - started
    results["full_context_prompt"] = {
        "prompt_tokens": len(full.tokens),
        "seconds": elapsed,
        "tokens_per_s": len(full.tokens) / elapsed,
    }
    print(json.dumps(results, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "generate.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
