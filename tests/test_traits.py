"""The trait table: every trait the built-ins use has one documented meaning, and docs/traits.md is generated."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from ganforge_core import Options
from ganforge_core.registry import Component, Registry
from ganforge_core.traits import TRAITS, builtin_registry, declared_traits, markdown, uses

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def builtins() -> Registry:
    registry = builtin_registry()
    assert registry.problems == []
    return registry


def test_every_trait_a_builtin_declares_requires_or_refuses_is_in_the_table(builtins: Registry) -> None:
    unknown = {name: use for name, use in uses(builtins).items() if name not in TRAITS}
    assert unknown == {}, "add these to ganforge_core.traits.TRAITS"


def test_every_trait_in_the_table_is_used_by_a_builtin(builtins: Registry) -> None:
    assert sorted(set(TRAITS) - set(uses(builtins))) == []


def test_every_trait_has_a_meaning(builtins: Registry) -> None:
    assert all(trait.meaning for trait in TRAITS.values())


def test_traits_page_is_generated_from_the_table_and_the_registry(builtins: Registry) -> None:
    page = (ROOT / "docs" / "traits.md").read_text()
    assert page == markdown(builtins), "regenerate with: ganforge docs traits > docs/traits.md"


def test_the_page_names_who_declares_requires_and_refuses_each_trait(builtins: Registry) -> None:
    row = next(line for line in markdown(builtins).splitlines() if line.startswith("| `lipschitz-penalty` |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2] == "loss 'wgan-gp'<br>regularizer 'gradient-penalty'"
    assert cells[3] == "-"
    assert cells[4] == "regularizer 'gradient-penalty'<br>regularizer 'r1'<br>regularizer 'r2'"


class Shape(Options):
    mode: Literal["plain", "fancy"] = Field("plain", description="a literal")
    extra: bool = Field(False, description="a flag")
    size: int = Field(3, ge=1, description="validated alone")


def test_traits_of_options_are_found_under_each_literal_value_and_flipped_flag() -> None:
    def traits(options: Shape) -> set[str]:
        return {"always"} | ({"fancy"} if options.mode == "fancy" else set()) | ({"extra"} if options.extra else set())

    component = Component("loss", "shape", lambda o, c: None, Shape, "test", trait_spec=traits)
    assert declared_traits(component) == {"always", "fancy", "extra"}
    assert component.traits(component.validate({})) == {"always"}  # the defaults alone hide two


def test_option_dependent_traits_of_builtins_are_found(builtins: Registry) -> None:
    # Their traits are functions of the options, evaluated here with the defaults and variations.
    found = uses(builtins)
    assert "discriminator 'dcgan'" in found["batchnorm-in-d"].declared_by
    assert "generator 'mlp'" in found["batchnorm-in-g"].declared_by  # only with batchnorm=true
    assert "regularizer 'r2'" in found["graph-safe"].declared_by
