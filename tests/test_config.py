"""Dataclass configs from YAML sections and from the command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from data_prep.errors import UserError
from mlm.config import add_arguments, config_from_args, config_from_dict, load_yaml


@dataclass
class Demo:
    name: str = field(default="x", metadata={"help": "a name"})
    steps: int = 3
    rate: float = 0.5
    flag: bool = False
    maybe: int | None = None
    items: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if not 0 < self.rate < 1:
            raise UserError(f"rate must be in (0, 1), got {self.rate}")


def test_from_dict_coerces_types():
    cfg = config_from_dict(
        Demo, {"steps": "7", "rate": 0.25, "flag": "yes", "items": "a, b", "extra": {"k": 1}}, "t"
    )
    assert cfg == Demo(steps=7, rate=0.25, flag=True, items=["a", "b"], extra={"k": 1})


def test_unknown_key_names_the_closest_valid_keys():
    with pytest.raises(UserError, match=r"section 'x': unknown key\(s\) 'stepz' \(did you mean steps\?\)"):
        config_from_dict(Demo, {"stepz": 1}, "recipe.yaml: section 'x'")
    with pytest.raises(UserError, match=r"'zzz'; `mlm COMMAND --help`"):  # nothing close: no guess
        config_from_dict(Demo, {"zzz": 1}, "t")


def test_bad_type_names_key():
    with pytest.raises(UserError, match="'steps' should be an integer, got 'many'"):
        config_from_dict(Demo, {"steps": "many"}, "t")


def test_filling_checks_keys_and_types_only():
    """Values are checked once, by the step that runs the config, not while it is filled."""
    cfg = config_from_dict(Demo, {"rate": 2}, "t")
    assert cfg.rate == 2
    with pytest.raises(UserError, match="rate must be in"):
        cfg.validate()


def test_cli_options_match_field_names_and_override_base():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Demo)
    ns = parser.parse_args(
        ["--steps", "9", "--flag", "--items", "a", "b", "--extra", '{"k": 2}', "--maybe", "4"]
    )
    cfg = config_from_args(Demo, ns, base={"name": "from-recipe", "steps": 1})
    assert cfg == Demo(name="from-recipe", steps=9, flag=True, items=["a", "b"], extra={"k": 2}, maybe=4)
    ns = parser.parse_args(["--flag", "false"])
    assert config_from_args(Demo, ns).flag is False
    # dashes are accepted too
    assert parser.parse_args(["--steps", "2"]).steps == "2"


def test_load_yaml_errors(tmp_path):
    with pytest.raises(UserError, match="recipe not found"):
        load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_yaml(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must be a mapping"):
        load_yaml(lst)
