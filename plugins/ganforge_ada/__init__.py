"""``ada``: adaptive discriminator augmentation (Karras et al. 2020, "Training GANs with limited data").

Every image D sees, real and fake, in every phase, goes through a differentiable
augmentation pipeline (:mod:`ganforge_ada.augment`), each op applied per sample
with probability p; p follows the overfitting heuristic r_t = E[sign(D(real))]
toward ``target`` (:mod:`ganforge_ada.adaptive`). p is checkpointed, logged as
``ada/p`` (with ``ada/rt``) and shown in the live view.

Refused before training: non-image data (``requires={"image"}``), since the
augmentations are image operations. Not ``graph-safe``: p changes on a schedule
counted on the host. This module imports neither torch nor numpy.
"""

from __future__ import annotations

from ganforge_ada.options import ADAOptions
from ganforge_core import BuildContext, Register, Regularizer, hookimpl


def _ada(options: ADAOptions, ctx: BuildContext) -> Regularizer:
    from ganforge_ada.adaptive import ADA

    return ADA(options, ctx.batch_size, ctx.device)


@hookimpl
def ganforge_register_regularizers(register: Register) -> None:
    register(
        "ada",
        _ada,
        options=ADAOptions,
        summary="adaptive augmentation of every image D sees, with p steered by r_t = E[sign(D(real))] "
        "(or annealed over the run, as R3GAN does); for limited data",
        traits={"stochastic"},
        requires={"image"},
        paper="Karras et al. 2020, 'Training generative adversarial networks with limited data' (StyleGAN2-ADA)",
    )
