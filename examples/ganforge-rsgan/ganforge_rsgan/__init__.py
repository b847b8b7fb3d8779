"""ganforge-rsgan: an example third-party ganforge plugin.

It registers two components through ganforge's hooks: the ``rsgan`` loss and the
``resmlp`` generator. ganforge finds this module through the ``ganforge``
entry point in pyproject.toml.
"""

from __future__ import annotations

from ganforge_core import NoOptions, Register, hookimpl

from ganforge_rsgan.generator import ResMLPOptions, build_generator
from ganforge_rsgan.loss import PAPER, PAPER_ADAM, build_loss


@hookimpl
def ganforge_register_losses(register: Register) -> None:
    register(
        "rsgan",
        build_loss,
        options=NoOptions,
        summary="relativistic standard GAN: BCE on C(real) - C(fake) for D, on C(fake) - C(real) for G",
        traits={"targets", "relativistic", "graph-safe"},
        recommends=PAPER_ADAM,
        paper=PAPER,
    )


@hookimpl
def ganforge_register_generators(register: Register) -> None:
    register(
        "resmlp",
        build_generator,
        options=ResMLPOptions,
        summary="residual MLP generator with LayerNorm; vectors, or images with a tanh output",
    )
