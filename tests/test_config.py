"""Where localrag keeps its files (LOCALRAG_HOME and the variables that override parts of it)
and how `config.toml` settings are read and checked."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from localrag.config import (
    apply_settings,
    config_path,
    default_db_path,
    embedders_dir,
    home_dir,
    models_dir,
    read_config_section,
)
from localrag.errors import ConfigError

CHECKOUT = Path(__file__).resolve().parent.parent

linux_only = pytest.mark.skipif(sys.platform == "darwin", reason="macOS uses Application Support")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LOCALRAG_HOME in a fresh folder (conftest sets one too; this one has a known path)."""
    folder = tmp_path / "home"
    monkeypatch.setenv("LOCALRAG_HOME", str(folder))
    monkeypatch.delenv("LOCALRAG_CONFIG", raising=False)
    return folder


# -- paths -------------------------------------------------------------------------------------


def test_localrag_home_moves_everything(home: Path) -> None:
    assert home_dir() == home
    assert config_path() == home / "config.toml"
    assert default_db_path() == home / "index.db"
    assert models_dir() == home / "models"  # even when running from a checkout
    assert embedders_dir() == home / "models" / "embedders"


def test_paths_in_variables_may_start_with_a_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LOCALRAG_HOME", "~/rag")
    monkeypatch.setenv("LOCALRAG_CONFIG", "~/settings/rag.toml")
    monkeypatch.setenv("LOCALRAG_DB", "~/dbs/work.db")
    monkeypatch.setenv("LOCALRAG_MODELS_DIR", "~/models")
    assert home_dir() == tmp_path / "rag"
    assert config_path() == tmp_path / "settings" / "rag.toml"
    assert default_db_path() == tmp_path / "dbs" / "work.db"
    assert models_dir() == tmp_path / "models"


def test_each_override_moves_only_its_own_part(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALRAG_DB", str(tmp_path / "elsewhere.db"))
    assert default_db_path() == tmp_path / "elsewhere.db"
    assert (config_path(), models_dir()) == (home / "config.toml", home / "models")
    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(tmp_path / "shared-models"))
    assert embedders_dir() == tmp_path / "shared-models" / "embedders"
    assert home_dir() == home
    monkeypatch.setenv("LOCALRAG_CONFIG", str(tmp_path / "team.toml"))
    assert config_path() == tmp_path / "team.toml"
    assert default_db_path() == tmp_path / "elsewhere.db"


@linux_only
def test_without_localrag_home_data_goes_where_xdg_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOCALRAG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert home_dir() == tmp_path / "xdg" / "localrag"
    assert default_db_path() == tmp_path / "xdg" / "localrag" / "index.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert home_dir() == tmp_path / "user" / ".local" / "share" / "localrag"
    monkeypatch.setenv("XDG_DATA_HOME", "")  # set but empty: as if unset
    assert home_dir() == tmp_path / "user" / ".local" / "share" / "localrag"


def test_run_from_a_checkout_without_localrag_home_models_are_the_checkouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "models").is_dir()
    monkeypatch.delenv("LOCALRAG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert models_dir() == CHECKOUT / "models"
    assert embedders_dir() == CHECKOUT / "models" / "embedders"
    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(tmp_path / "m"))
    assert models_dir() == tmp_path / "m"  # the variable still wins


# -- reading config.toml -----------------------------------------------------------------------


def test_no_settings_file_means_no_settings(home: Path) -> None:
    assert not config_path().exists()
    assert read_config_section("generation") == {}


def test_a_section_is_read_as_a_table_and_a_missing_one_is_empty(home: Path) -> None:
    home.mkdir()
    (home / "config.toml").write_text(
        '[generation]\nn_ctx = 2048\ntemperature = 0.1\nrepack = "off"\n\n'
        "[answer]\ncandidates = 3\n"
    )
    assert read_config_section("generation") == {"n_ctx": 2048, "temperature": 0.1, "repack": "off"}
    assert read_config_section("answer") == {"candidates": 3}
    assert read_config_section("index") == {}


def test_localrag_config_names_the_settings_file(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "team.toml"
    other.write_text("[answer]\ncandidates = 12\n")
    monkeypatch.setenv("LOCALRAG_CONFIG", str(other))
    assert read_config_section("answer") == {"candidates": 12}


def test_a_malformed_settings_file_is_an_error_naming_it(home: Path) -> None:
    home.mkdir()
    path = home / "config.toml"
    path.write_text("[generation]\nn_ctx = = 2048\n")
    with pytest.raises(ConfigError) as caught:
        read_config_section("generation")
    message = str(caught.value)
    assert message.startswith(f"cannot read settings file {path}: ")
    assert "line 2" in message  # tomllib says where


def test_a_settings_file_that_is_not_utf8_is_an_error_naming_it(home: Path) -> None:
    home.mkdir()
    (home / "config.toml").write_bytes(b'[answer]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"cannot read settings file .*config\.toml"):
        read_config_section("answer")


def test_a_folder_where_the_settings_file_should_be_is_an_error(home: Path) -> None:
    (home / "config.toml").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"cannot read settings file .*config\.toml"):
        read_config_section("answer")


def test_a_section_that_is_not_a_table_is_an_error(home: Path) -> None:
    home.mkdir()
    (home / "config.toml").write_text("answer = 3\n")
    with pytest.raises(ConfigError, match=r"config\.toml: \[answer\] must be a table of settings"):
        read_config_section("answer")


# -- applying settings -------------------------------------------------------------------------


@dataclass
class _Knobs:
    n_ctx: int = 4096
    temperature: float = 0.2
    stream: bool = True
    repack: str = "auto"
    n_threads: int | None = None
    ignore: list[str] = field(default_factory=list)


def test_settings_are_applied_by_name_with_dashes_or_underscores() -> None:
    knobs = _Knobs()
    apply_settings(
        knobs,
        {"n-ctx": 1024, "temperature": 0.7, "stream": False, "repack": "off", "ignore": ["*.log"]},
        "config.toml [generation]",
    )
    assert knobs == _Knobs(1024, 0.7, False, "off", None, ["*.log"])


def test_an_int_is_accepted_where_a_float_is_expected() -> None:
    knobs = _Knobs()
    apply_settings(knobs, {"temperature": 0}, "here")
    assert knobs.temperature == 0


def test_a_setting_whose_default_is_none_takes_a_value() -> None:
    knobs = _Knobs()
    apply_settings(knobs, {"n_threads": 4}, "here")
    assert knobs.n_threads == 4


def test_an_unknown_setting_is_refused_with_the_known_ones_listed() -> None:
    with pytest.raises(ConfigError) as caught:
        apply_settings(_Knobs(), {"context": 1024}, "config.toml [generation]")
    assert str(caught.value) == (
        "config.toml [generation]: unknown setting 'context' "
        "(known: n_ctx, temperature, stream, repack, n_threads, ignore)"
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("n_ctx", "big", "n_ctx should be int, got 'big'"),
        ("n-ctx", 1.5, "n-ctx should be int, got 1.5"),
        ("n_ctx", True, "n_ctx should be int, got True"),  # a bool is not a number here
        ("stream", 1, "stream should be bool, got 1"),
        ("stream", "yes", "stream should be bool, got 'yes'"),
        ("temperature", "hot", "temperature should be float, got 'hot'"),
        ("repack", 0, "repack should be str, got 0"),
        ("ignore", "*.log", "ignore should be list, got '*.log'"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_key(
    key: str, value: object, message: str
) -> None:
    knobs = _Knobs()
    with pytest.raises(ConfigError) as caught:
        apply_settings(knobs, {key: value}, "config.toml [generation]")
    assert str(caught.value) == f"config.toml [generation]: {message}"
    assert knobs == _Knobs()


def test_a_bool_is_not_accepted_where_a_float_is_expected() -> None:
    """`temperature = true` is a mistake, as `n_ctx = true` is: TOML true is not a number."""
    knobs = _Knobs()
    with pytest.raises(ConfigError, match="temperature should be float, got True"):
        apply_settings(knobs, {"temperature": True}, "config.toml [generation]")
    assert knobs.temperature == 0.2
