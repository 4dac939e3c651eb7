"""A GGUF language model in llama.cpp: safe loading, the model's own chat template, streaming.

Two things here are not what llama-cpp-python does by default:

- Untrusted text never becomes control tokens. The chat template is rendered with placeholders;
  the template's own text is tokenized with special tokens parsed, every message's content
  without. A document containing `<|im_end|><|im_start|>system` stays plain text.
- Weight repacking ("extra buffer types") is switched off where it crashes. On some x86 CPUs
  llama.cpp's repacked quantized kernels segfault inside `llama_decode`; `Llama(...)` offers no
  switch, so the model parameters are adjusted while the model loads (see `_model_params`).
"""

from __future__ import annotations

import ctypes
import logging
import platform
import sys
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localrag.config import apply_settings, read_config_section
from localrag.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from llama_cpp import Llama

    from localrag.models.gguf_info import GGUFInfo

# Used when a GGUF carries no chat template: ChatML is what most small instruct models speak.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
REPACK_CHOICES = ("auto", "on", "off")


@dataclass
class LLMSettings:
    """How a model is loaded and sampled; `[generation]` in config.toml overrides defaults."""

    n_ctx: int = 4096  # capped at the model's trained context length
    n_threads: int | None = None  # None: llama.cpp's choice (half the logical cores)
    n_gpu_layers: int | None = None  # None: every layer on Apple Metal, none elsewhere
    temperature: float = 0.2  # low: grounded answers should not be creative
    top_p: float = 0.95
    max_tokens: int = 512
    repack: str = "auto"  # weight repacking: auto (off where it crashes), on, off
    seed: int = 0

    @classmethod
    def from_config(cls, **overrides: Any) -> LLMSettings:
        settings = cls()
        apply_settings(settings, read_config_section("generation"), "config.toml [generation]")
        apply_settings(
            settings, {k: v for k, v in overrides.items() if v is not None}, "generation settings"
        )
        if settings.repack not in REPACK_CHOICES:
            raise ConfigError(f"repack must be one of {', '.join(REPACK_CHOICES)}")
        return settings


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    first_token_s: float | None = None  # from the call to the first streamed text
    total_s: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        decode = self.total_s - (self.first_token_s or 0.0)
        if self.generated_tokens <= 1 or decode <= 0:
            return 0.0
        return (self.generated_tokens - 1) / decode


@dataclass
class ChatPrompt:
    """A rendered chat prompt as token ids, with the size of each untrusted part."""

    tokens: list[int]
    part_tokens: list[int] = field(default_factory=list)


def default_gpu_layers() -> int:
    """All layers on Apple silicon (Metal builds are the default there), none elsewhere."""
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return -1
    return 0


def cpu_has_amx() -> bool:
    """Intel AMX: the CPUs on which llama.cpp's repacked quantized kernels were seen to crash."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return any(flag.startswith("amx") for flag in line.split())
    except OSError:
        pass
    return False


def repack_enabled(setting: str, file_type: str) -> bool:
    """Whether to let llama.cpp repack weights for this model on this machine."""
    if setting != "auto":
        return setting == "on"
    # Repacking only changes quantized weights, and only x86 AMX CPUs are known to crash.
    quantized = not file_type.upper().startswith(("F32", "F16", "BF16"))
    return not (quantized and platform.machine() in ("x86_64", "AMD64") and cpu_has_amx())


_LOAD_LOCK = threading.Lock()


@contextmanager
def _model_params(use_extra_bufts: bool) -> Iterator[None]:
    """Make `Llama(...)` load with `use_extra_bufts` set as asked.

    `Llama.__init__` starts from `llama_model_default_params()` and has no argument for this
    field, so the default-params function it calls is wrapped for the duration of the load.
    """
    import llama_cpp.llama as llama_module

    lib = llama_module.llama_cpp
    original = lib.llama_model_default_params

    def params() -> Any:
        value = original()
        value.use_extra_bufts = use_extra_bufts
        return value

    with _LOAD_LOCK:
        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = original


def import_llama_cpp(purpose: str) -> Any:
    """The llama_cpp module, or a ModelError saying how to install it."""
    try:
        import llama_cpp
        import llama_cpp.llama  # installs llama-cpp-python's own log callback, replaced below
    except ImportError as exc:
        raise ModelError(
            f"{purpose} needs llama-cpp-python: pip install 'localrag[llm]' "
            "(it compiles llama.cpp, a few minutes)"
        ) from exc
    _quiet_llama_cpp(llama_cpp)
    return llama_cpp


# llama.cpp's own messages go to this logger, never to the terminal: the library never prints.
# llama-cpp-python prints those at its ERROR level even with verbose=False, and llama.cpp logs
# some notices at that level ("llama_kv_cache_iswa: using full-size SWA cache (ref: https://…)"
# on every Gemma 3 load), which read as if something went online. Errors reach the user as the
# ModelError that a failed load raises.
LLAMA_CPP_LOG = logging.getLogger("localrag.llama_cpp")
LLAMA_CPP_LOG.addHandler(logging.NullHandler())
_GGML_LEVELS = {0: logging.CRITICAL, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}
_log_callback: Any = None  # kept referenced: llama.cpp holds only a C pointer to it


@contextmanager
def llama_cpp_messages() -> Iterator[list[str]]:
    """llama.cpp's messages while the block runs, all levels (a failure's reason is in them)."""
    collected: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            collected.append(record.getMessage())

    handler = Collect(logging.DEBUG)
    level = LLAMA_CPP_LOG.level
    LLAMA_CPP_LOG.setLevel(logging.DEBUG)
    LLAMA_CPP_LOG.addHandler(handler)
    try:
        yield collected
    finally:
        LLAMA_CPP_LOG.removeHandler(handler)
        LLAMA_CPP_LOG.setLevel(level)


def _quiet_llama_cpp(llama_cpp: Any) -> None:
    global _log_callback
    if _log_callback is not None:
        return

    @llama_cpp.llama_log_callback
    def forward(level: int, text: bytes, user_data: Any) -> None:
        message = text.decode("utf-8", "replace").rstrip()
        if message:
            LLAMA_CPP_LOG.log(_GGML_LEVELS.get(level, logging.DEBUG), "%s", message)

    _log_callback = forward
    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))


class LocalLLM:
    """One loaded GGUF model. Calls are serialised: llama.cpp contexts are not thread-safe."""

    def __init__(self, llama: Llama, info: GGUFInfo, settings: LLMSettings, repack: bool) -> None:
        self.llama = llama
        self.info = info
        self.settings = settings
        self.repack = repack
        self._lock = threading.Lock()
        template = info.chat_template or FALLBACK_CHAT_TEMPLATE
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._token_text(llama.token_eos()),
            bos_token=self._token_text(llama.token_bos()),
        )

    @property
    def is_base_model(self) -> bool:
        """No chat template: it continues text, it does not answer (see GGUFInfo)."""
        return self.info.is_base_model

    @classmethod
    def load(cls, path: Path | str, settings: LLMSettings | None = None) -> LocalLLM:
        """Load a GGUF file, checking it first so a bad file gives an error naming it."""
        from localrag.models.gguf_info import read_gguf_info

        settings = settings or LLMSettings()
        path = Path(path)
        info = read_gguf_info(path)  # raises ModelError for missing, non-GGUF, truncated files
        llama_cpp = import_llama_cpp("running a language model")
        n_ctx = min(settings.n_ctx, info.context_length or settings.n_ctx)
        repack = repack_enabled(settings.repack, info.file_type)
        gpu_layers = (
            settings.n_gpu_layers if settings.n_gpu_layers is not None else default_gpu_layers()
        )
        try:
            with _model_params(use_extra_bufts=repack):
                llama = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_batch=min(512, n_ctx),
                    n_threads=settings.n_threads,
                    n_gpu_layers=gpu_layers,
                    seed=settings.seed,
                    verbose=False,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                f"llama.cpp could not load {path} ({info.architecture}, {info.file_type}): {exc}"
            ) from exc
        if bool(llama.model_params.use_extra_bufts) != repack:
            raise ModelError(f"could not set weight repacking for {path}: llama-cpp-python changed")
        return cls(llama, info, settings, repack)

    # -- tokens -------------------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        return int(self.llama.n_ctx())

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llama.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """Token ids of `text`; `special` parses special-token syntax (template text only)."""
        if not text:
            return []
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def count_tokens(self, text: str) -> int:
        """Tokens of plain (untrusted) text: special-token syntax in it is not parsed."""
        return len(self._tokenize(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of `text` that is at most `max_tokens` tokens."""
        if max_tokens <= 0:
            return ""
        tokens = self._tokenize(text)
        if len(tokens) <= max_tokens:
            return text
        cut = self.llama.detokenize(tokens[:max_tokens]).decode("utf-8", errors="ignore")
        # Detokenizing can merge differently; trim until it fits for sure.
        while cut and self.count_tokens(cut) > max_tokens:
            cut = cut[: int(len(cut) * 0.95)]
        return cut

    def text_prompt(self, text: str) -> list[int]:
        """Token ids of a plain completion prompt (for a base model, which has no chat
        format): the text as text, after the BOS token where the vocabulary wants one."""
        return self._with_bos(self._tokenize(text))

    def chat_prompt(self, messages: Sequence[dict[str, Any]]) -> ChatPrompt:
        """Render messages with the model's chat template into token ids.

        A message's content may be a string or a list of strings (parts); each part is
        tokenized on its own, without parsing special tokens, so part sizes add up exactly and
        the caller can pack parts into the context by counting them one at a time.
        """
        marker = "\x00{}\x00"
        parts: list[str] = []
        rendered_messages = []
        for message in messages:
            content = message["content"]
            pieces = [content] if isinstance(content, str) else list(content)
            holders = []
            for piece in pieces:
                holders.append(marker.format(len(parts)))
                parts.append(piece)
            rendered_messages.append({**message, "content": "".join(holders)})
        text = self._render(rendered_messages)
        tokens: list[int] = []
        part_tokens = [0] * len(parts)
        for i, chunk in enumerate(text.split("\x00")):
            if i % 2 == 0:  # template text: its special-token syntax is real
                tokens.extend(self._tokenize(chunk, special=True))
            else:
                index = int(chunk)
                ids = self._tokenize(parts[index])
                part_tokens[index] = len(ids)
                tokens.extend(ids)
        return ChatPrompt(tokens=self._with_bos(tokens), part_tokens=part_tokens)

    def _with_bos(self, tokens: list[int]) -> list[int]:
        """The BOS token first, by llama.cpp's own rule for this vocabulary, unless it is
        there already (chat templates that print it)."""
        bos = self.llama.token_bos()
        if self.llama._model.add_bos_token() and bos >= 0 and tokens[:1] != [bos]:
            return [bos, *tokens]
        return tokens

    def _render(self, messages: list[dict[str, Any]]) -> str:
        try:
            return self._formatter(messages=messages).prompt  # type: ignore[arg-type]
        except Exception as exc:  # the template's own raise_exception, or a Jinja error
            # Some templates refuse a system role: fold it into the first user turn.
            if len(messages) > 1 and messages[0]["role"] == "system":
                merged = messages[0]["content"] + "\n\n" + messages[1]["content"]
                first = {**messages[1], "content": merged}
                return self._render([first, *messages[2:]])
            raise ModelError(
                f"the chat template of {self.info.path} cannot render this conversation: {exc}"
            ) from exc

    # -- generation ---------------------------------------------------------------------------

    def stream(
        self,
        prompt: Sequence[int],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        grammar: str | None = None,
        stats: GenerationStats | None = None,
    ) -> Generator[str, None, None]:
        """Yield the answer's text as it is generated (stops at the model's end of turn).

        `grammar` (GBNF) constrains the output; closing the iterator stops generation.
        """
        settings = self.settings
        budget = max_tokens if max_tokens is not None else settings.max_tokens
        budget = min(budget, self.n_ctx - len(prompt))
        if budget <= 0:
            raise ModelError(
                f"the prompt ({len(prompt)} tokens) fills the context window ({self.n_ctx})"
            )
        stats = stats if stats is not None else GenerationStats()
        stats.prompt_tokens = len(prompt)
        llama_grammar = None
        if grammar is not None:
            from llama_cpp import LlamaGrammar

            llama_grammar = LlamaGrammar.from_string(grammar, verbose=False)
        started = time.perf_counter()
        with self._lock:
            chunks = self.llama.create_completion(
                prompt=list(prompt),
                max_tokens=budget,
                stopping_criteria=_token_limit(len(prompt) + budget),
                temperature=settings.temperature if temperature is None else temperature,
                top_p=settings.top_p,
                seed=settings.seed,
                stream=True,
                grammar=llama_grammar,
            )
            try:
                for chunk in chunks:
                    choice: Any = chunk["choices"][0]  # type: ignore[index]
                    text = choice["text"]
                    if choice["finish_reason"] is None:  # one chunk per token, then a last one
                        stats.generated_tokens += 1
                    if text:
                        if stats.first_token_s is None:
                            stats.first_token_s = time.perf_counter() - started
                        yield text
            finally:
                chunks.close()  # type: ignore[union-attr]
                stats.total_s = time.perf_counter() - started

    def complete(self, prompt: Sequence[int], **kwargs: Any) -> str:
        return "".join(self.stream(prompt, **kwargs))

    def close(self, timeout: float = 30.0) -> None:
        """Free the model; waits (up to `timeout`) for a stream still running in another thread."""
        acquired = self._lock.acquire(timeout=timeout)
        try:
            self.llama.close()
        finally:
            if acquired:
                self._lock.release()


def _token_limit(total: int) -> Any:
    """Stop once the context holds `total` tokens. llama-cpp-python checks `max_tokens` only
    after a token that completes a character, so a run of partial UTF-8 bytes (CJK or emoji
    text split into byte tokens) can run past it and off the end of the context window."""
    from llama_cpp import StoppingCriteriaList

    def reached(input_ids: Any, _logits: Any) -> bool:
        # input_ids: the tokens evaluated so far; the one just sampled is not among them.
        return len(input_ids) >= total

    return StoppingCriteriaList([reached])


def load_llm(name_or_path: str | None = None, **overrides: Any) -> LocalLLM | None:
    """The model the user asked for (or the default), loaded; None when none is installed."""
    from localrag.models.registry import resolve_model

    path = resolve_model(name_or_path)
    if path is None:
        return None
    return LocalLLM.load(path, LLMSettings.from_config(**overrides))
