"""Checks for plugin authors: the contract ganforge's own test suite holds every component to.

Every check raises :class:`AssertionError` with a message that names what is
wrong, so it works under pytest (or any runner) and needs nothing but ganforge:

    from ganforge_core.testing import check_component, check_isolation, smoke_train

    def test_my_loss_meets_the_contract():
        check_component("loss", "my-loss")

Three levels, from the most to the least convenient:

* :func:`check_component` checks one registered component by kind and name: its
  options model, then what it builds, on CPU, with small options and fixed seeds.
* :func:`check_isolation` builds a run exactly as ganforge does and checks that the
  D phases (D main, D reg) leave G untouched and the G phases leave D untouched; :func:`smoke_train`
  trains a few steps end to end, reloads the run, and checks an exact resume.
* ``check_generator``, ``check_loss`` and the other ``check_*`` functions check an
  object you built yourself; ganforge's own contract tests call them with inputs
  drawn by hypothesis.

Components are built with :data:`SMALL_VALUES` for the options they have and
accept (:func:`small_options`), so the checks take seconds. The checks look
components up among the installed plugins; pass ``plugins=Plugins(extra=[(name,
module)])`` to check a plugin before it is packaged. Guide: docs/testing-plugins.md.

Every public name is importable from here. The package has one module per kind's
check (``networks``, ``losses``, ``regularizers``, ``schedules``, ``data``,
``metrics``, ``loggers``, ``options``), ``gradients`` for what losses and penalties
send D, ``component`` for :func:`check_component`, ``isolation`` and ``runs`` for
whole runs, and ``objects`` for what they all build.
"""

from __future__ import annotations

from ganforge_core.testing.component import COMPONENT_CHECKS, check_component
from ganforge_core.testing.data import check_dataset, check_renderer
from ganforge_core.testing.isolation import check_d_phase_isolated, check_g_phase_isolated, check_isolation
from ganforge_core.testing.loggers import check_logger
from ganforge_core.testing.losses import check_loss
from ganforge_core.testing.metrics import check_metric
from ganforge_core.testing.networks import (
    check_conditional_discriminator,
    check_conditional_generator,
    check_declares_batchnorm,
    check_discriminator,
    check_generator,
    check_growing,
    check_per_sample,
    check_truncation,
)
from ganforge_core.testing.objects import (
    BATCHNORM_TRAIT,
    MODALITIES,
    SMALL_VALUES,
    TinyCritic,
    TinyGenerator,
    build_context,
    default_traits,
    small_options,
)
from ganforge_core.testing.options import check_options
from ganforge_core.testing.regularizers import check_regularizer
from ganforge_core.testing.runs import assert_identical, build_run, smoke_train
from ganforge_core.testing.schedules import check_schedule

__all__ = [
    "SMALL_VALUES",
    "TinyCritic",
    "TinyGenerator",
    "assert_identical",
    "build_context",
    "build_run",
    "check_component",
    "check_conditional_discriminator",
    "check_conditional_generator",
    "check_d_phase_isolated",
    "check_dataset",
    "check_declares_batchnorm",
    "check_discriminator",
    "check_g_phase_isolated",
    "check_generator",
    "check_growing",
    "check_per_sample",
    "check_truncation",
    "check_isolation",
    "check_logger",
    "check_loss",
    "check_metric",
    "check_options",
    "check_regularizer",
    "check_renderer",
    "check_schedule",
    "default_traits",
    "small_options",
    "smoke_train",
]
