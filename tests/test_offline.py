"""`import localrag` switches telemetry and hub access off; the download commands still download.

Every check runs in a fresh process: the switches are read once per process, and this test
process imported localrag long ago. tests/test_no_network.py proves the switches are enough,
under strace; these prove which values win and that downloading still works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.gguf import write_gguf
from tests.helpers.hub_server import Hub, serve_hub

ROOT = Path(__file__).resolve().parent.parent
SWITCHES = (
    "ORT_DISABLE_TELEMETRY",
    "HF_HUB_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY",
    "UNSLOTH_DISABLE_STATISTICS",
)


def fresh_env(**user: str) -> dict[str, str]:
    """This environment without any switch (this process has them all), plus the user's own."""
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES and k != "TRANSFORMERS_OFFLINE"}
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        env.pop(var, None)
    env.update(user)
    return env


def python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


SHOW = (
    "import json, os, sys\n"
    "import localrag.embedder\n"
    f"print(json.dumps({{k: os.environ.get(k) for k in {SWITCHES!r}}}))\n"
)


def test_import_switches_everything_off() -> None:
    seen = json.loads(python(SHOW, fresh_env()))
    assert seen == dict.fromkeys(SWITCHES, "1")


def test_a_users_own_settings_are_kept_but_not_onnxruntime_telemetry() -> None:
    user = {
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "false",
        "UNSLOTH_DISABLE_STATISTICS": "yes",
        "ORT_DISABLE_TELEMETRY": "0",  # localrag promises no telemetry: overridden
    }
    seen = json.loads(python(SHOW, fresh_env(**user)))
    assert seen == {**user, "ORT_DISABLE_TELEMETRY": "1"}
    # A value onnxruntime already reads as "disabled" is left as written.
    seen = json.loads(python(SHOW, fresh_env(ORT_DISABLE_TELEMETRY=" TRUE ")))
    assert seen["ORT_DISABLE_TELEMETRY"] == " TRUE "


def test_onnxruntime_imported_first_is_reported(tmp_path: Path) -> None:
    code = (
        "import warnings\n"
        "warnings.simplefilter('error')\n"
        "import onnxruntime\n"
        "try:\n"
        "    import localrag\n"
        "except RuntimeWarning as w:\n"
        "    print(w)\n"
    )
    # onnxruntime's own test-harness switch keeps this run from starting its real telemetry,
    # and localrag does not read it, so the warning still shows.
    quiet = {"ORT_RUNNING_UNIT_TESTS": "1", "HOME": str(tmp_path)}
    assert "import localrag first" in python(code, fresh_env(**quiet))
    assert python(code, fresh_env(**quiet, ORT_DISABLE_TELEMETRY="1")) == ""
    assert not (tmp_path / ".cache").exists()


ONLINE = (
    "import os\n"
    "import localrag\n"
    "from localrag.offline import online\n"
    "import huggingface_hub.constants as hub\n"
    "def state():\n"
    "    return os.environ.get('HF_HUB_OFFLINE'), hub.HF_HUB_OFFLINE\n"
    "before = state()\n"
    "with online():\n"
    "    inside = state()\n"
    "print(before, inside, state())\n"
)


def test_online_lifts_only_the_offline_switch_localrag_set() -> None:
    assert python(ONLINE, fresh_env()).split("\n")[0] == ("('1', True) (None, False) ('1', True)")
    user = "('1', True) ('1', True) ('1', True)"
    assert python(ONLINE, fresh_env(HF_HUB_OFFLINE="1")).split("\n")[0] == user


def test_online_puts_a_hub_imported_inside_it_back_offline() -> None:
    code = (
        "import sys\n"
        "import localrag\n"
        "from localrag.offline import online\n"
        "with online():\n"
        "    import huggingface_hub.constants as hub\n"
        "    inside = hub.HF_HUB_OFFLINE\n"
        "print(inside, hub.HF_HUB_OFFLINE)\n"
    )
    assert python(code, fresh_env()).strip() == "False True"


# -- the download commands, as a user runs them ---------------------------------------------------


@pytest.fixture
def hub() -> Iterator[Hub]:
    with serve_hub() as hub:
        yield hub


def localrag(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localrag", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_models_pull_downloads(hub: Hub, tmp_path: Path) -> None:
    data = write_gguf(tmp_path / "served.gguf").read_bytes()
    hub.add("o/r", "m.gguf", data)
    models = tmp_path / "models"
    env = fresh_env(HF_ENDPOINT=hub.url, LOCALRAG_MODELS_DIR=str(models))
    done = localrag(env, "models", "pull", "hf:o/r/m.gguf")
    assert done.returncode == 0, done.stderr
    assert "Downloaded m" in done.stdout
    assert (models / "m.gguf").read_bytes() == data


def test_models_pull_respects_a_users_hf_hub_offline(hub: Hub, tmp_path: Path) -> None:
    hub.add("o/r", "m.gguf", write_gguf(tmp_path / "served.gguf").read_bytes())
    env = fresh_env(
        HF_ENDPOINT=hub.url, LOCALRAG_MODELS_DIR=str(tmp_path / "models"), HF_HUB_OFFLINE="1"
    )
    done = localrag(env, "models", "pull", "hf:o/r/m.gguf")
    assert done.returncode == 1
    assert "HF_HUB_OFFLINE is set" in done.stderr
    assert hub.requests == []


def test_import_embedder_download_asks_the_hub(hub: Hub, tmp_path: Path) -> None:
    # The stand-in hub has no such model: the command must ask it, and fail for that reason.
    env = fresh_env(HF_ENDPOINT=hub.url, LOCALRAG_MODELS_DIR=str(tmp_path / "models"))
    done = localrag(env, "models", "import-embedder", "--download")
    assert done.returncode == 1
    assert "could not download" in done.stderr
    assert "offline mode" not in done.stderr
    assert hub.requests, "the download never asked the hub"


def test_import_embedder_download_respects_a_users_hf_hub_offline(hub: Hub, tmp_path: Path) -> None:
    env = fresh_env(
        HF_ENDPOINT=hub.url, LOCALRAG_MODELS_DIR=str(tmp_path / "models"), HF_HUB_OFFLINE="1"
    )
    done = localrag(env, "models", "import-embedder", "--download")
    assert done.returncode == 1
    assert "offline mode is on (HF_HUB_OFFLINE is set)" in done.stderr
    assert hub.requests == []
