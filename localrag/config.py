"""Where things live and the settings that shape indexing.

One environment variable, LOCALRAG_HOME, moves everything (tests rely on it). Model files live
in `models/`: the checkout's own `models/` folder when running from a source tree, otherwise
`$LOCALRAG_HOME/models`; LOCALRAG_MODELS_DIR overrides both.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from localrag.errors import ConfigError

# Decimal megabytes, as `--max-file-size` counts and every message shows them (localrag.sizes).
DEFAULT_MAX_FILE_BYTES = 50_000_000
# What a DOCX may unpack to, and the text a PDF may yield: a 292 kB DOCX can hold 200 MB of XML.
DEFAULT_MAX_UNPACKED_BYTES = 64_000_000
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


def home_dir() -> Path:
    """The per-user data folder: databases, models (outside a checkout), settings."""
    env = os.environ.get("LOCALRAG_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "localrag"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "localrag"


def _checkout_models_dir() -> Path | None:
    """`models/` beside the package when localrag runs from its source tree."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "models").is_dir():
        return root / "models"
    return None


def config_path() -> Path:
    """Optional settings file: `$LOCALRAG_HOME/config.toml` (LOCALRAG_CONFIG overrides)."""
    env = os.environ.get("LOCALRAG_CONFIG")
    return Path(env).expanduser() if env else home_dir() / "config.toml"


def read_config_section(section: str) -> dict[str, Any]:
    """One `[section]` of the settings file; empty when the file or the section is absent."""
    path = config_path()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc}") from exc
    value = data.get(section, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{section}] must be a table of settings")
    return value


def apply_settings(target: Any, values: dict[str, Any], where: str) -> None:
    """Set dataclass fields from a settings table, refusing unknown keys and wrong types."""
    known = {f.name: f for f in fields(target)}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"{where}: unknown setting {key!r} (known: {', '.join(known)})")
        current = getattr(target, name)
        # An int where a float is expected is fine; true/false is not a number here.
        widening = (
            isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool)
        )
        wrong = not isinstance(value, type(current)) or isinstance(value, bool) != isinstance(
            current, bool
        )
        if current is not None and wrong and not widening:
            raise ConfigError(f"{where}: {key} should be {type(current).__name__}, got {value!r}")
        setattr(target, name, value)


def models_dir() -> Path:
    env = os.environ.get("LOCALRAG_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    if "LOCALRAG_HOME" not in os.environ:
        checkout = _checkout_models_dir()
        if checkout is not None:
            return checkout
    return home_dir() / "models"


def embedders_dir() -> Path:
    return models_dir() / "embedders"


def embedder_folder_name(name: str) -> str:
    """The folder under embedders_dir() a model name is installed in, and the shortest
    `--embedder` value for it: "sentence-transformers/all-MiniLM-L6-v2" → "all-MiniLM-L6-v2"."""
    return name.rstrip("/").rsplit("/", 1)[-1]


def default_db_path() -> Path:
    env = os.environ.get("LOCALRAG_DB")
    if env:
        return Path(env).expanduser()
    return home_dir() / "index.db"


@dataclass
class IndexSettings:
    """Knobs of one indexing run; defaults suit a laptop."""

    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    # Compressed formats (DOCX, PDF streams) are refused past this much unpacked content.
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES
    # Passage size in the embedder's own tokens; None means "as long as the model was trained on".
    chunk_tokens: int | None = None
    overlap_tokens: int = 24
    # New chunks gathered across files before embedding: sorting this many by length keeps
    # padding as low as the embedder's own best case (bench: 64 gave 0.83 of raw throughput),
    # and a Ctrl-C loses at most one such batch (~10 s on a laptop).
    embed_batch: int = 256
    extra_ignore: list[str] = field(default_factory=list)
