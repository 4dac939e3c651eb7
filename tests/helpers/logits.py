"""Next-token logits of the same weights computed two ways, to check a GGUF against what
training computed: llama.cpp running the file, and transformers (+ peft) running the folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def llama_cpp_logits(path: Path, ids: list[int], n_ctx: int = 256) -> np.ndarray:
    """llama.cpp's next-token logits at every position of `ids` (rows × vocabulary)."""
    import llama_cpp

    llama = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, logits_all=True, verbose=False)
    try:
        llama.eval(ids)
        return np.array(llama.scores[: len(ids)])
    finally:
        llama.close()


def peft_logits(model_dir: Path, adapter: Path, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """transformers' logits at every position of `ids` with the LoRA adapter, and without it
    (the base alone), from one load of the float32 model."""
    import peft
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model = peft.PeftModel.from_pretrained(model, str(adapter)).eval()
    with torch.no_grad():
        tuned = model(torch.tensor([ids])).logits[0].numpy()
    with model.disable_adapter(), torch.no_grad():
        untuned = model(torch.tensor([ids])).logits[0].numpy()
    return tuned, untuned
