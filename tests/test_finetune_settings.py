"""Training settings are checked before any model is loaded, with the setting named."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from localrag.errors import LocalragError
from localrag.finetune.settings import BACKENDS, DEVICES, Backend, Device, TrainSettings


def test_the_defaults_can_train() -> None:
    TrainSettings().check()


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"lora_r": 0}, "lora_r"),
        ({"epochs": 0}, "epochs"),
        ({"max_seq_len": 0}, "max_seq_len"),
        ({"max_steps": 0}, "max_steps"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"lora_dropout": 1.0}, "lora_dropout"),
        ({"threads": 0}, "threads"),
    ],
)
def test_settings_that_cannot_train_are_refused_by_name(
    changes: dict[str, Any], named: str
) -> None:
    with pytest.raises(LocalragError, match=named):
        TrainSettings(**changes).check()


def test_the_choices_offered_are_the_typed_ones() -> None:
    """The CLI offers BACKENDS; they must be exactly what the settings' type allows."""
    assert get_args(Backend) == BACKENDS
    assert get_args(Device) == DEVICES
