"""The kinds of component are written once (ganforge_core/kinds.py); everything else follows them.

Meta-tests in the spirit of datasette's: the hook contract, the run configuration,
the registry, the contract checks and the hook reference all agree with the table.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from ganforge_core import components, hookspecs, testing
from ganforge_core.components import KINDS
from ganforge_core.config import Choice, RunConfig
from ganforge_core.hookdocs import BEGIN, END, reference
from ganforge_core.kinds import TABLE
from ganforge_core.plugins import REGISTER_HOOKS
from ganforge_core.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
SPEC_IDS = [spec.name for spec in TABLE]
# Hooks that are not one kind's registration hook.
OTHER_HOOKS = {
    "ganforge_register_commands",
    "ganforge_train_start",
    "ganforge_step_end",
    "ganforge_checkpoint_saved",
    "ganforge_train_end",
}


def hookspec_names() -> set[str]:
    return {name for name in dir(hookspecs) if name.startswith("ganforge_")}


def test_every_registration_hook_is_one_kind_and_every_kind_has_its_hook() -> None:
    assert [spec.name for spec in TABLE] == list(KINDS)
    assert hookspec_names() - OTHER_HOOKS == {spec.hook for spec in TABLE}
    assert REGISTER_HOOKS == {spec.name: spec.hook for spec in TABLE}


@pytest.mark.parametrize("spec", TABLE, ids=SPEC_IDS)
def test_the_hook_of_a_kind_takes_the_register_callback(spec) -> None:
    hook = getattr(hookspecs, spec.hook)
    assert list(inspect.signature(hook).parameters) == ["register"]
    assert f"{spec.plural}" in inspect.getdoc(hook).splitlines()[0].lower(), "the docstring names what it registers"


@pytest.mark.parametrize("spec", TABLE, ids=SPEC_IDS)
def test_a_kind_is_chosen_by_its_run_config_field_with_its_default(spec) -> None:
    field = RunConfig.model_fields[spec.field]
    default = field.get_default(call_default_factory=True)
    if spec.cardinality == "one":
        assert isinstance(default, Choice) and default.name == spec.default
    elif spec.cardinality == "optional":
        assert default is None
    else:
        assert default in ([], None)
    assert "Choice" in str(field.annotation)


@pytest.mark.parametrize("spec", TABLE, ids=SPEC_IDS)
def test_a_kind_builds_a_contract_type_and_has_its_checks(spec) -> None:
    assert spec.builds == "nn.Module" or isinstance(getattr(components, spec.builds), type)
    assert callable(getattr(testing, spec.check)) and spec.check in testing.__all__
    assert spec.name in testing.COMPONENT_CHECKS
    assert spec.factory_context in {"BuildContext", "RunContext"}


def test_the_registry_has_a_place_for_every_kind_and_nothing_else() -> None:
    registry = Registry()
    assert all(registry.names(kind) == [] for kind in KINDS)
    with pytest.raises(KeyError):
        registry.names("sampler")  # type: ignore[arg-type]


def test_the_hook_reference_holds_the_generated_reference() -> None:
    page = (ROOT / "docs" / "hooks.md").read_text()
    assert page.count(BEGIN) == page.count(END) == 1
    generated = page[page.index(BEGIN) : page.index(END) + len(END)] + "\n"
    assert generated == reference(), "regenerate with: .venv/bin/ganforge docs hooks"


@pytest.mark.parametrize("protocol", ["Loss", "Regularizer", "Schedule", "Metric", "Logger", "DContext", "GContext"])
def test_every_protocol_method_and_field_is_in_the_reference(protocol: str) -> None:
    text = reference()
    cls = getattr(components, protocol)
    assert f"### `{protocol}`" in text
    for name, member in vars(cls).items():
        if inspect.isfunction(member) and not name.startswith("_"):
            assert f"- `{name}(" in text, f"{protocol}.{name} missing from the reference"
    for name in getattr(cls, "__dataclass_fields__", {}):
        assert f"| `{name}` |" in text, f"{protocol}.{name} missing from the reference"


def test_the_contract_changelog_has_a_section_for_the_current_version() -> None:
    from ganforge_core import CONTRACT_VERSION

    page = (ROOT / "docs" / "contract-changelog.md").read_text()
    versions = [int(v) for v in re.findall(r"^## Version (\d+)$", page, re.MULTILINE)]
    assert versions and versions[0] == CONTRACT_VERSION, "newest first, and it is the current version"
    assert versions == sorted(versions, reverse=True)
