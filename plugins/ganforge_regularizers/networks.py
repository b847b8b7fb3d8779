"""Regularizers acting on the networks themselves: ``spectral-norm`` and ``ema``."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ganforge_core import Regularizer
from ganforge_regularizers.options import EMAOptions, SpectralNormOptions


class SpectralNorm(Regularizer):
    """Divides each conv/linear weight by its largest singular value (Miyato et al. 2018)."""

    def __init__(self, options: SpectralNormOptions) -> None:
        self.options = options

    def _apply(self, network: nn.Module) -> nn.Module:
        for module in list(network.modules()):
            if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.ConvTranspose2d):
                # ConvTranspose2d keeps output channels in dim 1 of its weight.
                dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
                spectral_norm(module, n_power_iterations=self.options.power_iterations, dim=dim)
        return network

    def wrap_discriminator(self, discriminator: nn.Module) -> nn.Module:
        return self._apply(discriminator)

    def wrap_generator(self, generator: nn.Module) -> nn.Module:
        return self._apply(generator) if self.options.generator else generator


class GeneratorEMA(Regularizer):
    """An exponential moving average of G's parameters and buffers, used for samples and metrics.

    Karras et al. 2018 (progressive GANs) and Yazıcı et al. 2019 show the average
    generates better than the last iterate. Floating-point buffers (BatchNorm's
    running statistics) are averaged like the parameters; integer buffers (batch
    counters) are copied. Spectral norm's power-iteration vectors are not averaged
    (an average of unit vectors is not one): after each update they take one power
    iteration on the averaged weight, so they are the averaged weight's singular
    vectors and stay unit vectors.

    The copy is made from G when first needed, after every regularizer has
    wrapped G and the run has moved it to its device. Updates are in-place
    ``lerp_`` on tensors with a constant weight, so with ``start=0`` and ``ramp=0`` a
    CUDA graph may capture them. ``ramp=N`` raises the half-life from 0 to decay's over
    the first N G steps on a cosine, as R3GAN's EMA scheduler does.
    """

    def __init__(self, options: EMAOptions) -> None:
        self.options = options
        self.start = options.start
        self._generator: nn.Module | None = None
        self._average: nn.Module | None = None
        self._spectral: list[tuple[nn.Module, Tensor]] = []  # (the average's parametrization, its weight)
        self._vectors: set[int] = set()  # ids of the average's power-iteration vectors

    def wrap_generator(self, generator: nn.Module) -> nn.Module:
        self._generator = generator
        return generator

    def _average_of(self, generator: nn.Module) -> nn.Module:
        if self._average is None:
            average = copy.deepcopy(generator).requires_grad_(False)
            for parameter in average.parameters():
                parameter.grad = None
            self._average = average
            self._spectral = list(_spectral_norms(average))
            self._vectors = {id(t) for p, _ in self._spectral for t in (p._u, p._v)}
        return self._average

    @torch.no_grad()
    def after_g_step(self, generator: nn.Module, step: int) -> None:
        average = self._average_of(generator)
        weight = 1.0 if step <= self.start else 1.0 - self.options.decay_at(step)
        for mine, theirs in zip(_tensors(average), _tensors(generator), strict=True):
            if id(mine) in self._vectors:
                continue
            if mine.is_floating_point():
                mine.lerp_(theirs, weight)
            else:
                mine.copy_(theirs)
        for norm, weight_of in self._spectral:
            # The parametrization's forward in training mode runs its power iteration
            # on the averaged weight and writes the normalised vectors in place.
            training = norm.training
            norm.train()
            norm(weight_of)
            norm.train(training)

    def sampling_generator(self) -> nn.Module | None:
        return None if self._generator is None else self._average_of(self._generator)

    def state_dict(self) -> dict[str, Any]:
        return {} if self._average is None else {"average": self._average.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "average" in state and self._generator is not None:
            self._average_of(self._generator).load_state_dict(state["average"])


def _spectral_norms(module: nn.Module) -> Iterator[tuple[nn.Module, Tensor]]:
    """Each spectral-norm parametrization in ``module`` with the raw weight it normalises."""
    for owner in module.modules():
        if not parametrize.is_parametrized(owner):
            continue
        chains: nn.ModuleDict = owner.parametrizations  # type: ignore[assignment]  # set by parametrize
        for chain in chains.values():
            assert isinstance(chain, parametrize.ParametrizationList)
            for norm in chain:
                if hasattr(norm, "_u") and hasattr(norm, "_v"):
                    yield norm, chain.original


def _tensors(module: nn.Module) -> Iterator[Tensor]:
    yield from module.parameters()
    yield from module.buffers()
