"""LoRA training and merging on CPU with real tiny models (transformers + peft back end)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from localrag.errors import LocalragError
from localrag.finetune import backends
from localrag.finetune.backends import choose_backend
from localrag.finetune.merge import merge_adapter
from localrag.finetune.settings import TrainSettings
from localrag.finetune.sft_data import IGNORE, build_training_set, tokenize_chat
from localrag.finetune.train import (
    TRAINING_JSON,
    TrainProgress,
    TrainResult,
    checkpoint_steps,
    finished_run,
    hash_base_model,
    train_lora,
)
from tests.helpers.llm import TinySpec, write_tiny_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

REPO = Path(__file__).resolve().parent.parent

# Four short conversations a tiny model can learn by heart.
CHATS: list[list[dict[str, str]]] = [
    [
        {"role": "user", "content": "Where is the meeting on Tuesday?"},
        {"role": "assistant", "content": "In room 12 at 10:30."},
    ],
    [
        {"role": "system", "content": "Answer from the garden notes."},
        {"role": "user", "content": "How often should I water tomatoes?"},
        {"role": "assistant", "content": "Deeply, twice a week."},
    ],
    [
        {"role": "user", "content": "What does the invoice exporter write?"},
        {"role": "assistant", "content": "CSV files for the accounting department."},
    ],
    [
        {"role": "user", "content": "How long do the lentils simmer?"},
        {"role": "assistant", "content": "For thirty minutes."},
    ],
]
DATASET_SHA = "d" * 64


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """One thread: these tiny models train ~15× faster than with two threads on a busy 2-core
    machine (the threads wait on each other), and the rest of the suite keeps a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Fast and memorising: a 4-example batch per step, high learning rate.
FAST = TrainSettings(
    lora_r=8,
    lora_alpha=16,
    learning_rate=2e-3,
    max_steps=20,
    batch_size=4,
    grad_accum=1,
    warmup_steps=2,
    save_every=50,
)


def write_dataset(folder: Path, chats: list[list[dict[str, str]]], manifest: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": i, "messages": m}) for i, m in enumerate(chats)]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if manifest:
        (folder / "manifest.json").write_text(json.dumps({"dataset_sha256": DATASET_SHA}))
    return folder


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("dataset"), CHATS)


@dataclass
class Trained:
    result: TrainResult
    reports: list[TrainProgress]


@pytest.fixture(scope="module")
def trained(
    tiny_llm_dir: Path, dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Trained:
    """One short run on the memorisable set, shared by the tests that read its outputs."""
    reports: list[TrainProgress] = []
    result = train_lora(
        tiny_llm_dir,
        dataset_dir,
        tmp_path_factory.mktemp("run") / "out",
        FAST,
        progress=reports.append,
    )
    return Trained(result, reports)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("llama") / "tiny-llama", TinySpec("llama"))


def load_tokenizer(folder: Path) -> Any:
    return transformers.AutoTokenizer.from_pretrained(str(folder))


def adapter_tensors(adapter_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(adapter_dir / "adapter_model.safetensors"))


def prompt_ids(folder: Path) -> list[int]:
    tok = load_tokenizer(folder)
    text = tok.apply_chat_template(CHATS[0][:1], tokenize=False, add_generation_prompt=True)
    return list(tok(text, add_special_tokens=False)["input_ids"])


def logits_of(model: Any, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double().numpy()


def load_base(folder: Path) -> Any:
    return transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)


# --------------------------------------------------------------------------- training


def test_loss_goes_down_on_a_memorisable_set(trained: Trained) -> None:
    losses = trained.result.losses
    assert len(losses) == 20 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])
    assert losses[-1] < 1.0  # learnt, not merely nudged


def test_progress_reports_every_step_with_eta(trained: Trained) -> None:
    reports = trained.reports
    assert [r.step for r in reports] == list(range(1, 21))
    assert {r.total_steps for r in reports} == {20}
    assert [r.loss for r in reports] == trained.result.losses
    assert all(r.tokens_per_s > 0 for r in reports)
    assert reports[-1].eta_s == 0 and reports[0].eta_s > reports[10].eta_s > 0
    assert reports[-1].epoch == pytest.approx(20.0)  # 4 examples, one batch of 4 per step
    # Linear warmup over 2 steps, then decay towards zero.
    lrs = [r.learning_rate for r in reports]
    assert lrs[0] == pytest.approx(1e-3) and lrs[1] == pytest.approx(2e-3)
    assert lrs[2] > lrs[10] > lrs[-1] > 0


def run_with_stop(
    base: Path, data: Path, out: Path, settings: TrainSettings, stop_at: int | None
) -> TrainResult:
    """Train, simulating a crash right after step `stop_at` (its checkpoint already written)."""

    class Crash(Exception):
        pass

    def progress(p: TrainProgress) -> None:
        if p.step == stop_at:
            raise Crash

    try:
        return train_lora(base, data, out, settings, progress=progress)
    except Crash:
        return train_lora(base, data, out, settings, resume=True)


def test_resume_gives_the_same_adapter_and_losses(
    tiny_llm_dir: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    # Dropout draws from the RNG and one step spans two micro-batches of one example, so a
    # resume must restore RNG state, optimizer, scheduler and the position in the data order.
    settings = TrainSettings(
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.1,
        learning_rate=1e-3,
        max_steps=10,
        batch_size=1,
        grad_accum=2,
        warmup_steps=3,
        save_every=5,
    )
    whole = run_with_stop(tiny_llm_dir, dataset_dir, tmp_path / "whole", settings, None)
    resumed = run_with_stop(tiny_llm_dir, dataset_dir, tmp_path / "resumed", settings, 5)

    assert whole.resumed_from is None and resumed.resumed_from == 5
    assert resumed.losses == whole.losses and len(whole.losses) == 10
    want, got = adapter_tensors(whole.adapter_dir), adapter_tensors(resumed.adapter_dir)
    assert want.keys() == got.keys() and want
    for name in want:
        assert torch.equal(want[name], got[name]), name
    record = json.loads(resumed.training_json.read_text())
    assert record["resumed_from"] == [5] and record["steps"] == 10
    # Checkpoints are complete folders, written under a temporary name first.
    assert checkpoint_steps(tmp_path / "resumed") == [5]
    assert not [p for p in (tmp_path / "resumed").rglob("*") if "partial" in p.name]
    state = json.loads((tmp_path / "resumed/checkpoints/step-5/state.json").read_text())
    assert state["step"] == 5 and state["data_position"] == 10 and len(state["losses"]) == 5


def test_resume_refuses_other_settings_and_a_fresh_run_refuses_a_used_folder(
    tiny_llm_dir: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    settings = TrainSettings(lora_r=4, max_steps=2, grad_accum=1, batch_size=4, save_every=1)
    out = tmp_path / "out"
    train_lora(tiny_llm_dir, dataset_dir, out, settings)
    assert checkpoint_steps(out) == [1]
    with pytest.raises(LocalragError, match="already holds a training run"):
        train_lora(tiny_llm_dir, dataset_dir, out, settings)
    other = TrainSettings(lora_r=4, max_steps=2, grad_accum=1, batch_size=4, learning_rate=1e-3)
    with pytest.raises(LocalragError, match="learning_rate"):
        train_lora(tiny_llm_dir, dataset_dir, out, other, resume=True)


def test_training_json_records_the_run(trained: Trained, tiny_llm_dir: Path) -> None:
    result = trained.result
    record = json.loads(result.training_json.read_text())
    assert record["base_model"]["path"] == str(tiny_llm_dir.resolve())
    assert record["base_model"]["sha256"] == hash_base_model(tiny_llm_dir)
    assert record["base_model"]["files"] == ["config.json", "model.safetensors"]
    assert record["dataset"]["dataset_sha256"] == DATASET_SHA
    assert record["dataset"]["used"] == 4 and record["dataset"]["dropped_too_long"] == 0
    assert len(record["dataset"]["train_sha256"]) == 64
    assert record["backend"] == {"name": "peft", "device": "cpu", "reason": result.choice.reason}
    settings = record["settings"]
    assert settings["lora_r"] == 8 and settings["learning_rate"] == 2e-3
    assert settings["max_steps"] == 20 and settings["seed"] == 0
    assert settings["target_modules"] == [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    ]  # fmt: skip
    assert settings["threads"] is None and record["torch_threads"] == 1  # this module's default
    assert record["losses"] == result.losses and record["steps"] == 20
    assert record["duration_s"] > 0 and record["tokens"] > 0
    assert record["batches"] == "packed"  # four examples a micro-batch, without padding
    for lib in ("torch", "transformers", "peft", "python"):
        assert record["versions"][lib]
    assert record["versions"]["peft"] == peft.__version__
    adapter_config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert adapter_config["r"] == 8 and adapter_config["lora_alpha"] == 16


def test_threads_hold_for_the_run_and_are_put_back_after_it(
    tiny_llm_dir: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    assert torch.get_num_threads() == 1  # this module's fixture; the run asks for another count
    seen: list[int] = []

    def note_threads(p: TrainProgress) -> None:
        seen.append(torch.get_num_threads())

    settings = TrainSettings(lora_r=4, max_steps=2, batch_size=4, grad_accum=1, threads=2)
    result = train_lora(
        tiny_llm_dir, dataset_dir, tmp_path / "out", settings, progress=note_threads
    )
    assert seen == [2, 2] and torch.get_num_threads() == 1
    record = json.loads(result.training_json.read_text())
    assert record["settings"]["threads"] == 2 and record["torch_threads"] == 2

    class Stop(Exception):
        pass

    def stop(p: TrainProgress) -> None:
        raise Stop

    with pytest.raises(Stop):
        train_lora(tiny_llm_dir, dataset_dir, tmp_path / "stopped", settings, progress=stop)
    assert torch.get_num_threads() == 1  # put back when the run ends in an exception too
    with pytest.raises(LocalragError, match="threads"):
        TrainSettings(threads=0).check()


def test_base_model_hash_covers_the_weights(tmp_path: Path, tiny_llm_dir: Path) -> None:
    a = write_tiny_model(tmp_path / "a", TinySpec(layers=1))
    b = write_tiny_model(tmp_path / "b", TinySpec(layers=1, seed=5))
    assert hash_base_model(a) != hash_base_model(b)
    assert hash_base_model(a) == hash_base_model(
        write_tiny_model(tmp_path / "c", TinySpec(layers=1))
    )


# --------------------------------------------------------------------------- merging


@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft calls a renamed transformers API
def test_merged_model_matches_base_plus_adapter(
    trained: Trained, tiny_llm_dir: Path, tmp_path: Path
) -> None:
    ids = prompt_ids(tiny_llm_dir)
    base = logits_of(load_base(tiny_llm_dir), ids)
    with_adapter = peft.PeftModel.from_pretrained(
        load_base(tiny_llm_dir), str(trained.result.adapter_dir)
    )
    want = logits_of(with_adapter, ids)
    assert np.abs(want - base).max() > 0.1  # the adapter matters, so the check below can fail

    merged_dir = merge_adapter(
        tiny_llm_dir, trained.result.adapter_dir, tmp_path / "merged", dtype="float32"
    )
    merged = transformers.AutoModelForCausalLM.from_pretrained(str(merged_dir))
    assert merged.dtype == torch.float32
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert np.abs(logits_of(merged, ids) - want).max() < 1e-4
    lineage = json.loads((merged_dir / "merge.json").read_text())
    assert lineage["base_model"] == str(tiny_llm_dir.resolve())
    assert lineage["adapter"] == str(trained.result.adapter_dir.resolve())
    assert lineage["dataset_sha256"] == DATASET_SHA and lineage["dtype"] == "float32"
    assert lineage["base_sha256"] == hash_base_model(tiny_llm_dir)
    assert lineage["final_loss"] == trained.result.losses[-1]


def test_float16_merge_converts_to_gguf_and_llama_cpp_agrees(
    trained: Trained, tiny_llm_dir: Path, tmp_path: Path
) -> None:
    from localrag.models.gguf_convert import convert

    llama_cpp = pytest.importorskip("llama_cpp")
    merged_dir = merge_adapter(tiny_llm_dir, trained.result.adapter_dir, tmp_path / "m16")
    raw = (merged_dir / "model.safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"F16"}
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (merged_dir / name).read_bytes() == (tiny_llm_dir / name).read_bytes()
    merged = transformers.AutoModelForCausalLM.from_pretrained(str(merged_dir))
    assert merged.dtype == torch.float16

    gguf_path = convert(merged_dir, tmp_path / "merged.gguf", outtype="f16")
    ids = prompt_ids(tiny_llm_dir)
    llm = llama_cpp.Llama(
        model_path=str(gguf_path), n_ctx=64, logits_all=True, verbose=False, n_threads=1
    )
    assert (
        llm.tokenize(load_tokenizer(tiny_llm_dir).decode(ids).encode(), add_bos=False, special=True)
        == ids
    )
    llm.eval(ids)
    got = np.array(llm.scores[: len(ids)], dtype=np.float64)
    want = logits_of(merged.float(), ids)
    # f16 weights, f16 KV cache: agreement to about a percent of the largest logit.
    assert np.abs(got - want).max() / np.abs(want).max() < 0.02
    assert (got.argmax(axis=1) == want.argmax(axis=1)).mean() > 0.9


def test_merge_refuses_a_used_folder_and_unknown_dtype(
    trained: Trained, tiny_llm_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(LocalragError, match="already exists"):
        merge_adapter(tiny_llm_dir, trained.result.adapter_dir, tmp_path / "used")
    with pytest.raises(LocalragError, match="dtype"):
        merge_adapter(tiny_llm_dir, trained.result.adapter_dir, tmp_path / "m", dtype="int8")
    with pytest.raises(LocalragError, match="not a LoRA adapter"):
        merge_adapter(tiny_llm_dir, tmp_path, tmp_path / "m")


# --------------------------------------------------------------------------- labels


def unmasked_spans(ids: list[int], labels: list[int]) -> list[list[int]]:
    spans: list[list[int]] = []
    previous = IGNORE
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE:
            assert label == token
            if previous == IGNORE:
                spans.append([])
            spans[-1].append(token)
        previous = label
    return spans


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_labels_cover_only_the_assistant_turns(
    family: str, tiny_llm_dir: Path, llama_dir: Path
) -> None:
    folder = tiny_llm_dir if family == "qwen2" else llama_dir
    eot_text = "<|im_end|>" if family == "qwen2" else "<|eot_id|>"
    tok = load_tokenizer(folder)
    chat = [
        *CHATS[1],
        {"role": "user", "content": "And in August?"},
        {"role": "assistant", "content": "Every other day."},
    ]
    eot = {tok.convert_tokens_to_ids(eot_text)}
    example = tokenize_chat(tok, chat, eot)
    # The whole conversation, exactly as the template renders it …
    assert tok.decode(example.input_ids) == tok.apply_chat_template(chat, tokenize=False)
    # … and loss on each answer and the token that ends it, nothing else.
    spans = unmasked_spans(example.input_ids, example.labels)
    assert [tok.decode(s) for s in spans] == [
        f"Deeply, twice a week.{eot_text}",
        f"Every other day.{eot_text}",
    ]


def test_truncation_keeps_the_prompt_and_drops_what_cannot_fit(tiny_llm_dir: Path) -> None:
    tok = load_tokenizer(tiny_llm_dir)
    eot = {tok.eos_token_id}
    long, short = (
        CHATS[2],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes."}],
    )
    full = tokenize_chat(tok, long, eot)
    prompt_len = next(k for k, label in enumerate(full.labels) if label != IGNORE)
    assert len(tokenize_chat(tok, short, eot).input_ids) <= prompt_len

    cut = prompt_len + 3
    examples, stats = build_training_set(tok, [long, short], max_seq_len=cut)
    assert (stats.used, stats.truncated, stats.dropped_too_long) == (2, 1, 0)
    truncated = examples[0]
    assert truncated.input_ids == full.input_ids[:cut]
    trained = [
        t for t, label in zip(truncated.input_ids, truncated.labels, strict=True) if label != IGNORE
    ]
    assert trained == full.input_ids[prompt_len:cut]
    assert tok.eos_token_id not in trained  # no end token after a cut

    examples, stats = build_training_set(tok, [long, short], max_seq_len=prompt_len)
    assert (stats.used, stats.truncated, stats.dropped_too_long) == (1, 0, 1)
    assert any("max_seq_len" in note for note in stats.notes)
    with pytest.raises(LocalragError, match="no usable training examples"):
        build_training_set(tok, [long], max_seq_len=prompt_len)


def test_a_template_that_rewrites_the_prompt_is_reported(tiny_llm_dir: Path) -> None:
    tok = load_tokenizer(tiny_llm_dir)
    # A template whose generation prompt is not how it renders the assistant's turn.
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    )
    with pytest.raises(LocalragError, match="does not render their prompt"):
        build_training_set(tok, CHATS, max_seq_len=256)


def test_bad_training_lines_name_the_line(tiny_llm_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "train.jsonl").write_text(
        json.dumps({"messages": CHATS[0]}) + "\n" + json.dumps({"messages": CHATS[0][:1]}) + "\n"
    )
    with pytest.raises(LocalragError, match=r"train\.jsonl:2: no assistant message"):
        train_lora(tiny_llm_dir, folder, tmp_path / "out", FAST)


# --------------------------------------------------------------------------- back ends


@pytest.fixture
def fake_unsloth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Put a package named unsloth on sys.path whose import runs the given source."""

    def install(source: str) -> None:
        package = tmp_path / "site" / "unsloth"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path / "site"))

    yield install
    sys.modules.pop("unsloth", None)


def test_auto_uses_peft_on_cpu_and_says_why_not_unsloth() -> None:
    choice = choose_backend(TrainSettings())
    assert (choice.name, choice.device) == ("peft", "cpu")
    assert "unsloth" in choice.reason
    with pytest.raises(LocalragError, match="unsloth back end cannot run here"):
        choose_backend(TrainSettings(backend="unsloth"))
    with pytest.raises(LocalragError, match="cuda"):
        choose_backend(TrainSettings(device="cuda"))
    with pytest.raises(LocalragError, match="back end"):
        choose_backend(TrainSettings(backend="trl"))


def test_an_unsloth_that_fails_to_import_is_a_reason_not_a_crash(
    fake_unsloth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    fake_unsloth("raise NotImplementedError('Unsloth cannot find any torch accelerator')\n")
    choice = choose_backend(TrainSettings())
    assert choice.name == "peft" and choice.device == "cuda"
    assert "NotImplementedError" in choice.reason and "accelerator" in choice.reason
    with pytest.raises(LocalragError, match="NotImplementedError"):
        choose_backend(TrainSettings(backend="unsloth"))
    # Explicit overrides still win.
    assert choose_backend(TrainSettings(device="cpu")).device == "cpu"


def test_auto_picks_unsloth_when_a_gpu_and_unsloth_are_there(
    fake_unsloth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    fake_unsloth("FastLanguageModel = None\n")
    assert choose_backend(TrainSettings()).name == "unsloth"
    assert choose_backend(TrainSettings(backend="peft")).name == "peft"
    assert choose_backend(TrainSettings(device="cpu")).name == "peft"


def test_unsloth_is_imported_before_transformers_and_peft(
    tiny_llm_dir: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    """unsloth patches transformers and peft when imported; imported after them, it only warns."""
    package = tmp_path / "site" / "unsloth"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "import sys\n"
        "print('already imported:', [m for m in ('transformers', 'peft') if m in sys.modules])\n"
        "raise NotImplementedError('Unsloth cannot find any torch accelerator? You need a GPU.')\n"
    )
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path / 'site')!r})\n"
        "from localrag.errors import LocalragError\n"
        "from localrag.finetune.backends import BackendChoice\n"
        "from localrag.finetune.settings import TrainSettings\n"
        "from localrag.finetune.train import train_lora\n"
        "try:\n"
        f"    train_lora({str(tiny_llm_dir)!r}, {str(dataset_dir)!r}, {str(tmp_path / 'out')!r},\n"
        "               TrainSettings(max_steps=1), choice=BackendChoice('unsloth', 'cuda', ''))\n"
        "except LocalragError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "already imported: []" in out
    assert "cannot run here: NotImplementedError: Unsloth cannot find any torch accelerator" in out


def test_missing_libraries_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(LocalragError, match=r"localrag\[finetune\]"):
        backends.require_stack()


def test_the_finetune_modules_import_without_torch() -> None:
    code = (
        "import sys\n"
        "for name in ('torch', 'transformers', 'peft'): sys.modules[name] = None\n"
        "import localrag.finetune.train, localrag.finetune.merge, localrag.finetune.backends\n"
        "from localrag.errors import LocalragError\n"
        "from localrag.finetune.settings import TrainSettings\n"
        "from localrag.finetune.backends import choose_backend\n"
        "try:\n"
        "    choose_backend(TrainSettings())\n"
        "except LocalragError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "pip install 'localrag[finetune]'" in out.stdout


# --------------------------------------------------------------------------- the command


def _train_cli(*args: str) -> Any:
    from click.testing import CliRunner

    from localrag.cli import cli

    return CliRunner().invoke(cli, ["finetune", "train", *args], catch_exceptions=False)


def test_a_bad_quantization_is_refused_before_training(
    tiny_llm_dir: Path, dataset_dir: Path
) -> None:
    from localrag.config import models_dir

    result = _train_cli(str(tiny_llm_dir), str(dataset_dir), "--name", "q", "--quantize", "Q9_Z")
    assert result.exit_code == 1
    assert "unknown quantization 'Q9_Z'" in result.output
    assert "Training with" not in result.output
    assert not (models_dir() / "runs" / "q").exists()


def test_runs_live_beside_the_models_and_a_failed_export_can_be_resumed(
    tiny_llm_dir: Path, dataset_dir: Path
) -> None:
    from localrag.config import models_dir
    from localrag.models.registry import ModelRegistry

    args = [str(tiny_llm_dir), str(dataset_dir), "--name", "mine", "--steps", "2", "--threads", "1"]
    first = _train_cli(*args)
    assert first.exit_code == 0, first.output
    run = models_dir() / "runs" / "mine"
    assert (run / "training.json").is_file() and (run / "merged" / "merge.json").is_file()
    # As if converting had failed after the merge: the model is not installed, merged/ is left.
    ModelRegistry().remove("mine", delete_file=True)
    again = _train_cli(*args, "--resume", "--out", str(run))
    assert again.exit_code == 0, again.output
    assert "Already trained 2 steps" in again.output
    assert "Installed mine (Q4_K_M" in again.output
    assert ModelRegistry().get("mine").lineage is not None


def test_resuming_a_finished_run_trains_nothing(
    trained: Trained, tiny_llm_dir: Path, dataset_dir: Path
) -> None:
    out = trained.result.out_dir
    adapter = out / "adapter" / "adapter_model.safetensors"
    before = adapter.stat().st_mtime_ns
    again = train_lora(tiny_llm_dir, dataset_dir, out, FAST, resume=True)
    assert again.already_done and not trained.result.already_done
    assert again.losses == trained.result.losses and again.steps == trained.result.steps
    assert adapter.stat().st_mtime_ns == before
    # Any change that would train a different adapter means it is not the same run.
    base_sha = json.loads((out / TRAINING_JSON).read_text())["base_model"]["sha256"]
    train_file = dataset_dir / "train.jsonl"
    assert finished_run(out, base_sha, train_file, FAST) is not None
    assert finished_run(out, base_sha, train_file, replace(FAST, learning_rate=1e-3)) is None
    assert finished_run(out, "0" * 64, train_file, FAST) is None
    other = write_dataset(dataset_dir.parent / "other-data", CHATS[:2]) / "train.jsonl"
    assert finished_run(out, base_sha, other, FAST) is None


def test_training_never_touches_the_network(
    tiny_llm_dir: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    """As a user runs it: a fresh process, without the HF_HUB_OFFLINE the test suite sets."""
    attempts_file = tmp_path / "attempts.json"
    args = [
        *("finetune", "train", str(tiny_llm_dir), str(dataset_dir), "--name", "offline"),
        *("--steps", "1", "--threads", "1", "--out", str(tmp_path / "run")),
    ]
    code = (
        "import json, sys\n"
        "from tests.helpers.embedder import block_network\n"
        "with block_network() as attempts:\n"
        "    from localrag.cli import cli\n"
        "    try:\n"
        f"        cli.main({args!r}, standalone_mode=False)\n"
        "    finally:\n"
        f"        open({str(attempts_file)!r}, 'w').write(json.dumps(attempts))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "Installed offline" in done.stdout
    assert json.loads(attempts_file.read_text()) == []


def test_the_command_says_what_tokenizing_did_before_training(
    tiny_llm_dir: Path, tmp_path: Path
) -> None:
    long_prompt = [
        {"role": "user", "content": "Tell me about the garden. " * 40},
        {"role": "assistant", "content": "It is green."},
    ]
    long_answer = [
        {"role": "user", "content": "Describe the lentils."},
        {"role": "assistant", "content": "They simmer slowly in the pot. " * 40},
    ]
    short = [CHATS[0], CHATS[2], CHATS[3]]  # CHATS[1]'s system prompt makes it too long for 64
    data = write_dataset(tmp_path / "data", [*short, long_prompt, long_answer])
    result = _train_cli(
        *(str(tiny_llm_dir), str(data), "--name", "short", "--max-seq-len", "64"),
        *("--steps", "1", "--threads", "1", "--out", str(tmp_path / "run")),
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "4 of 5 examples to train on, 1 cut short at --max-seq-len." in out
    assert "1 examples skipped: the prompt alone fills max_seq_len (64 tokens)." in out
    assert "A larger --max-seq-len keeps those examples whole." in out
    assert out.index("examples to train on") < out.index("Trained 1 steps")


def test_the_answer_only_loss_is_the_models_own_loss_and_gradient(tiny_llm_dir: Path) -> None:
    """The output layer runs on labelled positions only; loss and gradients must not change."""
    import torch
    import transformers

    from localrag.finetune.sft_data import TokenizedExample
    from localrag.finetune.train import IGNORE, answer_loss, collate

    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_llm_dir, dtype=torch.float32)
    examples = [
        TokenizedExample(list(range(5, 45)), [IGNORE] * 28 + list(range(33, 45))),
        TokenizedExample(list(range(7, 30)), [IGNORE] * 10 + list(range(17, 30))),  # padded
    ]
    batch = collate(examples, 0, torch)
    grads = []
    losses = []
    for compute in (lambda: model(**batch).loss, lambda: answer_loss(model, batch, torch)):
        model.zero_grad()
        loss = compute()
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(model.get_input_embeddings().weight.grad.clone())
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


# --------------------------------------------------------------------------- packed batches


def _packing_examples() -> list[Any]:
    from localrag.finetune.sft_data import TokenizedExample

    def example(start: int, length: int, prompt: int) -> TokenizedExample:
        ids = list(range(start, start + length))
        return TokenizedExample(ids, [IGNORE] * prompt + ids[prompt:])

    return [example(5, 40, 28), example(60, 23, 10), example(90, 31, 20), example(130, 9, 4)]


@pytest.mark.parametrize("row_tokens", [512, 40], ids=["one-row", "rows-and-pad-tails"])
def test_packed_batches_give_the_padded_loss_and_gradient(
    tiny_llm_dir: Path, monkeypatch: pytest.MonkeyPatch, row_tokens: int
) -> None:
    """Examples end to end, positions restarting: each still sees only itself."""
    from localrag.finetune import train as train_module
    from localrag.finetune.train import answer_loss, collate, collate_packed

    monkeypatch.setattr(train_module, "PACK_ROW_TOKENS", row_tokens)
    examples = _packing_examples()
    packed = collate_packed(examples, 0, torch)
    padded = collate(examples, 0, torch)
    if row_tokens == 40:  # rows [40], [31, 9], [23 + a pad tail of 17]
        assert packed["input_ids"].shape == (3, 40)
        assert packed["position_ids"][2].tolist() == list(range(23)) + list(range(17))
        assert (packed["labels"][2, 23:] == IGNORE).all()
    else:
        assert packed["input_ids"].shape == (1, 103)
    assert packed["input_ids"].numel() < padded["input_ids"].numel()
    model = load_base(tiny_llm_dir)
    losses, grads = [], []
    for batch in (padded, packed):
        model.zero_grad()
        loss = answer_loss(model, batch, torch)
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads, strict=True))


def test_packing_is_checked_on_the_model_before_it_is_used(tiny_llm_dir: Path) -> None:
    """A model that builds its attention mask without the position ids would let packed
    examples read each other: the check catches it (simulated, as every architecture in
    transformers 5 reads them) and training keeps padded batches."""
    from localrag.finetune.train import packing_matches

    model = load_base(tiny_llm_dir).train()
    examples = _packing_examples()
    assert packing_matches(model, examples, 0, torch)
    assert model.training  # the check's eval mode is put back

    class IgnoresPositions(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, **inputs: Any) -> Any:
            inputs.pop("position_ids", None)
            return self.inner(**inputs)

    assert not packing_matches(IgnoresPositions(model), examples, 0, torch)


def test_training_on_packed_batches_follows_the_padded_run(
    tiny_llm_dir: Path, dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same losses step by step, and the same adapter, with and without packing."""
    from localrag.finetune import train as train_module

    settings = replace(FAST, max_steps=6)
    packed = train_lora(tiny_llm_dir, dataset_dir, tmp_path / "packed", settings)
    monkeypatch.setattr(train_module, "packing_matches", lambda *args: False)
    padded = train_lora(tiny_llm_dir, dataset_dir, tmp_path / "padded", settings)
    records = [json.loads(r.training_json.read_text()) for r in (packed, padded)]
    assert [r["batches"] for r in records] == ["packed", "padded"]
    assert records[0]["tokens"] == records[1]["tokens"]  # real tokens, not padding
    assert packed.losses == pytest.approx(padded.losses, rel=1e-4)
    a, b = adapter_tensors(packed.adapter_dir), adapter_tensors(padded.adapter_dir)
    # Adam turns rounding-level gradient differences into small weight ones (seen: 2e-5).
    gaps = {k: float((a[k] - b[k]).norm() / b[k].norm()) for k in a}
    assert max(gaps.values()) < 1e-3, gaps
