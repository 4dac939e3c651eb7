"""Training back ends: which one runs (unsloth on a GPU, transformers + peft elsewhere), and
loading a base model with fresh LoRA layers for each.

torch, transformers, peft and unsloth are imported inside functions: they are the optional
`finetune` extra, and the core package must import without them.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from localrag.errors import LocalragError

if TYPE_CHECKING:
    from localrag.finetune.settings import TrainSettings

INSTALL_HINT = "pip install 'localrag[finetune]'"
UNSLOTH_HINT = "pip install unsloth (it needs an NVIDIA, AMD or Intel GPU)"

# The attention and MLP projections of Llama-style decoders (Llama, Qwen2, Mistral, …).
LORA_CANDIDATES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

BACKENDS = ("auto", "unsloth", "peft")
DEVICES = ("auto", "cpu", "mps", "cuda")


@dataclass(frozen=True)
class BackendChoice:
    """The back end and device a run uses, and why: printed by the CLI, overridable."""

    name: Literal["unsloth", "peft"]
    device: Literal["cuda", "mps", "cpu"]
    reason: str


@dataclass
class LoadedModel:
    """A base model wrapped with trainable LoRA layers (a peft PeftModel either way)."""

    model: Any
    device: str
    compute_dtype: Any  # torch.dtype of the frozen base weights
    target_modules: list[str]


def require_torch() -> Any:
    """torch, or a LocalragError saying how to install the fine-tuning extra."""
    try:
        import torch
    except ImportError as exc:
        raise _missing_stack(exc) from exc
    return torch


def require_stack() -> tuple[Any, Any, Any]:
    """(torch, transformers, peft), or a LocalragError saying how to install them."""
    torch = require_torch()
    try:
        import peft
        import transformers
    except ImportError as exc:
        raise _missing_stack(exc) from exc
    return torch, transformers, peft


def _missing_stack(exc: ImportError) -> LocalragError:
    return LocalragError(
        f"Fine-tuning needs torch, transformers and peft ({exc.name} is missing). "
        f"Install them with `{INSTALL_HINT}`."
    )


def _try_unsloth() -> str | None:
    """None when unsloth imports; otherwise why not (it raises NotImplementedError on CPUs)."""
    try:
        if importlib.util.find_spec("unsloth") is None:
            return f"unsloth is not installed ({UNSLOTH_HINT})"
        importlib.import_module("unsloth")
    except Exception as exc:  # any import failure is a reason, never a crash
        return f"unsloth failed to import: {type(exc).__name__}: {exc}"
    return None


def import_unsloth() -> Any:
    """The unsloth module, or a LocalragError saying why it cannot run here.

    Import it before transformers and peft: unsloth patches them when it is imported and only
    warns (then trains slower) when they were imported first.
    """
    try:
        return importlib.import_module("unsloth")
    except Exception as exc:  # NotImplementedError on CPUs, ImportError, a broken GPU stack …
        raise LocalragError(
            f"The unsloth back end cannot run here: {type(exc).__name__}: {exc}"
        ) from exc


def _mps_available(torch: Any) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def choose_backend(settings: TrainSettings) -> BackendChoice:
    """Pick the back end and device for `settings` (auto: unsloth when it can run, else peft)."""
    if settings.backend not in BACKENDS:
        raise LocalragError(f"back end {settings.backend!r} is not one of {', '.join(BACKENDS)}")
    if settings.device not in DEVICES:
        raise LocalragError(f"device {settings.device!r} is not one of {', '.join(DEVICES)}")
    torch = require_torch()
    cuda = bool(torch.cuda.is_available())
    if settings.device == "cuda" and not cuda:
        raise LocalragError("device 'cuda' was asked for, but torch sees no CUDA GPU")
    if settings.device == "mps" and not _mps_available(torch):
        raise LocalragError("device 'mps' was asked for, but torch sees no Apple GPU (MPS)")

    if settings.backend in ("auto", "unsloth"):
        why_not: str | None
        if settings.device in ("cpu", "mps"):
            why_not = f"unsloth needs a CUDA GPU, and device {settings.device!r} was asked for"
        elif not cuda:
            why_not = "unsloth needs a CUDA GPU and torch sees none"
        else:
            why_not = _try_unsloth()
        if why_not is None:
            return BackendChoice("unsloth", "cuda", "a CUDA GPU is present and unsloth imports")
        if settings.backend == "unsloth":
            raise LocalragError(f"The unsloth back end cannot run here: {why_not}.")
        reason = f"{why_not}; using transformers + peft"
    else:
        reason = "transformers + peft, as asked"

    if settings.device != "auto":
        device = settings.device
    elif cuda:
        device = "cuda"
    elif _mps_available(torch):
        device = "mps"
    else:
        device = "cpu"
    return BackendChoice("peft", device, f"{reason} on {device}")


def lora_targets(model: Any, wanted: list[str] | None) -> list[str]:
    """The LoRA target module names: `wanted`, or the known projections the model has."""
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if wanted:
        missing = [m for m in wanted if m not in leaves]
        if missing:
            raise LocalragError(f"the model has no modules named {', '.join(missing)}")
        return list(wanted)
    found = [m for m in LORA_CANDIDATES if m in leaves]
    if not found:
        raise LocalragError(
            "no attention or MLP projections (q_proj, …, down_proj) found in the model; "
            "name the LoRA target modules explicitly"
        )
    return found


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' weight-loading progress bars and warnings during a run."""
    from transformers.utils import logging as hf_logging

    bars_were_enabled = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars_were_enabled:
            hf_logging.enable_progress_bar()


def _peft_dtype(torch: Any, device: str) -> Any:
    """float32 on CPU and MPS (small models, exact); bf16 on GPUs that support it."""
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_peft(base_dir: Path, settings: TrainSettings, device: str) -> LoadedModel:
    """transformers model + peft LoRA layers, initialised from settings.seed."""
    torch, transformers, peft = require_stack()
    dtype = _peft_dtype(torch, device)
    with quiet_transformers():
        model = transformers.AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype)
    model.config.use_cache = False
    targets = lora_targets(model, settings.target_modules)
    config = peft.LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(settings.seed)  # LoRA A matrices are drawn from torch's global RNG
    model = peft.get_peft_model(model, config)  # adapter weights kept in float32
    model.to(device)
    return LoadedModel(model, device, dtype, targets)


# How load_unsloth uses unsloth (checked against unsloth and unsloth_zoo main, 2026):
# - from_pretrained(model_name=<local folder>, max_seq_length, dtype=None, load_in_4bit) returns
#   (model, tokenizer); dtype=None is bf16 where supported, else fp16. local_files_only=True also
#   skips the usage statistics it otherwise fetches from the Hugging Face Hub on every load
#   (unsloth/models/_utils.py get_statistics; UNSLOTH_DISABLE_STATISTICS turns it off as well).
# - get_peft_model may turn use_gradient_checkpointing="unsloth" into True (short sequences) and
#   records the effective mode as model._unsloth_gradient_checkpointing; unsloth's own trainer
#   calls for_training(use_gradient_checkpointing=<that mode>) (issue unslothai/unsloth#4735),
#   and so do we, since for_training's default (True) would replace the "unsloth" mode.
# - The LoRA weights it trains are float32 even on an fp16 base (unsloth_zoo
#   prepare_model_for_training), so GradScaler can unscale them; the forward with labels returns
#   the shifted, -100-masked mean loss, so a plain torch loop works as with transformers.
# - On a machine without a GPU `import unsloth` raises NotImplementedError ("Unsloth cannot find
#   any torch accelerator? You need a GPU.", unsloth_zoo/device_type.py; unslothai/unsloth#5226).
UNSLOTH_GRADIENT_CHECKPOINTING = "unsloth"


def load_unsloth(base_dir: Path, settings: TrainSettings) -> LoadedModel:
    """unsloth FastLanguageModel (4-bit QLoRA or 16-bit LoRA) with the same LoRA settings."""
    unsloth = import_unsloth()
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")  # a private tool phones no one
    model, _tokenizer = unsloth.FastLanguageModel.from_pretrained(
        model_name=str(base_dir),
        max_seq_length=settings.max_seq_len,
        dtype=None,
        load_in_4bit=settings.load_in_4bit,
        local_files_only=True,
    )
    # What dtype=None chose (embeddings are never quantized): the loop autocasts to it and
    # scales fp16 gradients.
    dtype = model.get_input_embeddings().weight.dtype
    targets = lora_targets(model, settings.target_modules)
    model = unsloth.FastLanguageModel.get_peft_model(
        model,
        r=settings.lora_r,
        target_modules=targets,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        bias="none",
        use_gradient_checkpointing=UNSLOTH_GRADIENT_CHECKPOINTING,
        random_state=settings.seed,
    )
    mode = getattr(model, "_unsloth_gradient_checkpointing", UNSLOTH_GRADIENT_CHECKPOINTING)
    unsloth.FastLanguageModel.for_training(model, use_gradient_checkpointing=mode)
    return LoadedModel(model, "cuda", dtype, targets)


def library_versions(backend: str) -> dict[str, str]:
    """Versions of the libraries a run used, for training.json."""
    import platform

    from localrag import __version__ as localrag_version

    names = ["torch", "transformers", "peft", "accelerate", "safetensors"]
    if backend == "unsloth":
        names += ["unsloth", "unsloth_zoo", "bitsandbytes"]
    versions = {"python": platform.python_version(), "localrag": localrag_version}
    for name in names:
        try:
            versions[name] = str(importlib.import_module(name).__version__)
        except Exception:  # absent or without __version__: not worth failing a run over
            continue
    return versions
