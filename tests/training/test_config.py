"""A train config's ``members`` merge over the defaults: a config names only what it changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from prognos.errors import ConfigError
from prognos.training.config import MemberConfig, TrainConfig


def _from_yaml(tmp_path: Path, text: str) -> TrainConfig:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return TrainConfig.from_yaml(path)


def test_one_sequence_param_keeps_the_other_members_and_the_default_pool(tmp_path: Path) -> None:
    config = _from_yaml(tmp_path, "members:\n  sequence:\n    params:\n      hidden: 64\n")

    assert config.members["sequence"].params == {"pool": 3, "hidden": 64}
    assert config.members["xgboost"] == MemberConfig()
    assert config.members["forest"] == MemberConfig(enabled=False)
    assert config.active_members() == ["xgboost", "sequence"]


def test_an_explicit_param_overrides_the_default() -> None:
    config = TrainConfig.model_validate({"members": {"sequence": {"params": {"pool": 1}}}})

    assert config.members["sequence"].params == {"pool": 1}


def test_enabled_overrides_and_keeps_the_default_params() -> None:
    config = TrainConfig.model_validate(
        {"members": {"sequence": {"enabled": False}, "forest": {"enabled": True}}}
    )

    assert config.members["sequence"] == MemberConfig(enabled=False, params={"pool": 3})
    assert config.active_members() == ["xgboost", "forest"]


def test_member_config_objects_merge_like_mappings() -> None:
    config = TrainConfig(members={"sequence": MemberConfig(params={"max_epochs": 2})})

    assert config.members["sequence"].params == {"pool": 3, "max_epochs": 2}
    assert set(config.members) == {"xgboost", "sequence", "forest"}


def test_a_dumped_config_reloads_unchanged(tmp_path: Path) -> None:
    """What ``prognos tune`` writes (a full dump with tuned params) is what ``train`` reads."""
    tuned = TrainConfig.model_validate(
        {"members": {"sequence": {"params": {"pool": 1, "hidden": 32}}}}
    )
    text = yaml.safe_dump(tuned.model_dump(mode="json"), sort_keys=False)

    assert _from_yaml(tmp_path, text) == tuned


def test_an_unknown_member_is_still_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lstm"):
        _from_yaml(tmp_path, "members:\n  lstm:\n    params:\n      hidden: 64\n")


@pytest.mark.parametrize(
    "member",
    [{"params": None}, {"params": {"pool": 3}, "weight": 1.0}, "sequence"],
    ids=["params-null", "unknown-field", "not-a-mapping"],
)
def test_malformed_member_entries_are_still_refused(member: object) -> None:
    with pytest.raises(ValidationError):
        TrainConfig.model_validate({"members": {"sequence": member}})
