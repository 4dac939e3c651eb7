#!/usr/bin/env python3
"""Convert a Hugging Face model folder (Llama, Qwen2) to GGUF, optionally quantizing it.

    python scripts/convert_gguf.py HF_FOLDER OUT.gguf [--outtype f32|f16|q8_0] [--quantize Q4_K_M]

With --quantize, the model is first written at --outtype next to OUT.gguf, then quantized by
llama.cpp (llama-cpp-python) into OUT.gguf; the intermediate file is removed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Runnable from a checkout without installing localrag.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from localrag.errors import ModelError
from localrag.models.gguf_convert import OUTTYPES, convert, quant_ftype, quantize


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "hf_folder", type=Path, help="folder with config.json, safetensors, tokenizer.json"
    )
    parser.add_argument("out", type=Path, help="the GGUF file to write")
    parser.add_argument(
        "--outtype", choices=OUTTYPES, default="f16", help="tensor type (default f16)"
    )
    parser.add_argument(
        "--quantize", metavar="TYPE", help="then quantize with llama.cpp, e.g. Q4_K_M"
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> Path:
    if not args.quantize:
        return convert(args.hf_folder, args.out, args.outtype)
    # Fail before the long conversion: unknown type, or a source llama.cpp will not requantize.
    quant_ftype(args.quantize)
    if args.outtype == "q8_0":
        raise ModelError("--quantize needs --outtype f16 or f32 (q8_0 is already quantized)")
    intermediate = args.out.with_name(f"{args.out.stem}.{args.outtype}.tmp.gguf")
    try:
        convert(args.hf_folder, intermediate, args.outtype)
        return quantize(intermediate, args.out, args.quantize)
    finally:
        intermediate.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        out = run(args)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size_mb = out.stat().st_size / 1e6
    print(f"wrote {out} ({size_mb:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
