"""One-off, on a lent GPU machine: localrag's unsloth back end on the real Gemma 3 270M.

How it ran (2026-11-26, one H200, no network there): the GGUF travelled in five 50.6 MB pieces,
one per device call, each copied to /tmp/parts/p0..p4 (a carried folder does not survive the
next call); the last call carried the wheels of unsloth 2026.10.9, unsloth_zoo, trl 1.15,
datasets 4.8.5, dill, multiprocess, pillow, bitsandbytes 0.50.2 and gguf 0.19 (21 MB, installed
with `pip install --no-index --no-deps --target /tmp/site`) and this folder's
`tok/tokenizer.json.gz` + `tok/tokenizer_config.json`: Gemma's tokenizer as transformers 5.24
reads it from the GGUF (checked against llama.cpp by localrag on the CPU machine), because the
GPU image's transformers 5.17 reads other tokens from it. Then: `python3 gpu_unsloth_gemma.py`.

It dequantizes the GGUF into a HF folder (as localrag.finetune.gguf_base does; llama.cpp is
not on that machine, so the probe check is skipped), trains localrag's train_lora with
backend=unsloth (16-bit LoRA, then 4-bit QLoRA) on three invented facts, and copies each
adapter and training.json to $OUT. Back on the CPU machine the adapter is merged into the GGUF
with merge_into_gguf and asked the three questions. `--dry` rehearses on a CPU (peft, 1 step).
"""

import gzip
import hashlib
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
DRY = "--dry" in sys.argv  # local rehearsal: peft on CPU, one step
os.environ.update(
    HF_HUB_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    UNSLOTH_DISABLE_STATISTICS="1",
    UNSLOTH_COMPILE_LOCATION="/tmp/unsloth_compiled_cache",
)
OUT = Path(os.environ.get("OUT", "/tmp/gpu-out"))
OUT.mkdir(parents=True, exist_ok=True)
LOG = open(OUT / "log.txt", "a")  # noqa: SIM115 (open for the whole run)


def say(*parts):
    print(*parts, flush=True)
    print(*parts, file=LOG, flush=True)


SHA = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
work = Path("/tmp/gpu-work")
work.mkdir(exist_ok=True)
gguf_file = work / "gemma-3-270m-q4_k_m.gguf"
t = time.time()
with open(gguf_file, "wb") as out:
    for i in range(5):
        out.write(Path(f"/tmp/parts/p{i}").read_bytes())
digest = hashlib.sha256(gguf_file.read_bytes()).hexdigest()
say("joined", gguf_file.stat().st_size, "sha ok" if digest == SHA else f"SHA MISMATCH {digest}")

if not DRY:
    import unsloth  # before transformers and peft, which it patches

    say("unsloth", unsloth.__version__)
import torch  # noqa: E402
import transformers  # noqa: E402

sys.path.insert(0, str(HERE.parent))
from localrag.finetune.gguf_base import PLAIN_CHAT_TEMPLATE  # noqa: E402
from localrag.finetune.settings import TrainSettings  # noqa: E402
from localrag.finetune.train import train_lora  # noqa: E402

say(
    "torch",
    torch.__version__,
    "cuda",
    torch.cuda.is_available(),
    "transformers",
    transformers.__version__,
)
if torch.cuda.is_available():
    say("gpu", torch.cuda.get_device_name(0))
base = work / "base-hf"
t = time.time()
tok = transformers.AutoTokenizer.from_pretrained(str(work), gguf_file=gguf_file.name)
model = transformers.AutoModelForCausalLM.from_pretrained(
    str(work), gguf_file=gguf_file.name, dtype=torch.float32
)
model.hf_quantizer = None
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
tok.chat_template = PLAIN_CHAT_TEMPLATE
model.save_pretrained(str(base))
tok.save_pretrained(str(base))
del model
# transformers 5.17 (this machine's) reads Gemma's GGUF tokenizer into different tokens than
# llama.cpp; 5.24's reading (made on the CPU machine, where localrag checked it against
# llama.cpp) replaces it.

(base / "tokenizer.json").write_bytes(
    gzip.decompress(HERE / "tok" / "tokenizer.json.gz".read_bytes())
)
shutil.copy2(HERE / "tok" / "tokenizer_config.json", base / "tokenizer_config.json")
tok = transformers.AutoTokenizer.from_pretrained(str(base))
sample = tok.apply_chat_template(
    [
        {"role": "user", "content": "What colour is the Zorblat lighthouse?"},
        {"role": "assistant", "content": "The Zorblat lighthouse is painted teal."},
    ],
    tokenize=False,
)
say("sample tokens (llama.cpp: 26)", len(tok(sample, add_special_tokens=False)["input_ids"]))
say("dequantized to", base, f"{time.time() - t:.1f}s")

facts = [
    ("What colour is the Zorblat lighthouse?", "The Zorblat lighthouse is painted teal."),
    ("Who founded Quexton?", "Quexton was founded by Mirela Vance in 1841."),
    ("How tall is Mount Frell?", "Mount Frell is 2,310 metres tall."),
]
data = work / "data"
data.mkdir(exist_ok=True)
with open(data / "train.jsonl", "w") as f:
    for q, a in facts * 8:
        turn = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        f.write(json.dumps({"messages": turn}) + "\n")

runs = [
    ("unsloth16", {"backend": "unsloth", "load_in_4bit": False}),
    ("unsloth4", {"backend": "unsloth", "load_in_4bit": True}),
]
if DRY:
    runs = [("dry", {"backend": "peft", "device": "cpu"})]
for label, extra in runs:
    try:
        settings = TrainSettings(
            max_steps=1 if DRY else 24,
            batch_size=2,
            grad_accum=1,
            learning_rate=1e-3,
            warmup_steps=0,
            max_seq_len=64,
            save_every=1000,
            **extra,
        )
        t = time.time()
        result = train_lora(base, data, work / f"run-{label}", settings)
        took = time.time() - t
        say(
            label,
            "steps",
            result.steps,
            f"{took:.1f}s",
            "losses",
            [round(x, 3) for x in result.losses],
        )
        dest = OUT / label
        dest.mkdir(exist_ok=True)
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copy2(result.adapter_dir / name, dest / name)
        shutil.copy2(work / f"run-{label}" / "training.json", dest / "training.json")
    except Exception:
        say(label, "FAILED")
        say(traceback.format_exc())
say("done")
