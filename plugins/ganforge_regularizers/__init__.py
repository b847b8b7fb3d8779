"""Stabilisers: ``spectral-norm``, ``label-smoothing`` and ``instance-noise``."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from ganforge_core import BuildContext, Options, Regularizer, Targets, hookimpl


class SpectralNormOptions(Options):
    generator: bool = Field(False, description="also normalise G's layers")
    power_iterations: int = Field(1, ge=1, description="power iterations per forward pass")


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


class LabelSmoothingOptions(Options):
    real: float = Field(0.9, gt=0.5, le=1.0, description="target for real samples")
    fake: float = Field(
        0.0, ge=0.0, lt=0.5, description="target for fake samples; keep 0 (one-sided, as Salimans et al. advise)"
    )


class LabelSmoothing(Regularizer):
    """One-sided label smoothing: D's real targets become ``real`` (Salimans et al. 2016)."""

    def __init__(self, options: LabelSmoothingOptions) -> None:
        self.options = options

    def adjust_targets(self, targets: Targets) -> Targets:
        return Targets(real=self.options.real, fake=self.options.fake)


class InstanceNoiseOptions(Options):
    sigma: float = Field(0.1, gt=0, description="std of the Gaussian noise added to D's inputs at the start")
    anneal: Literal["linear", "none"] = Field("linear", description="linear: sigma falls to end_sigma at the end")
    end_sigma: float = Field(0.0, ge=0, description="sigma at the end of the run when annealed")

    @model_validator(mode="after")
    def _falls(self) -> InstanceNoiseOptions:
        if self.end_sigma > self.sigma:
            raise ValueError("end_sigma must not exceed sigma")
        return self


class InstanceNoise(Regularizer):
    """Gaussian noise on everything D sees, real and fake (Sønderby et al. 2017)."""

    def __init__(self, options: InstanceNoiseOptions) -> None:
        self.options = options

    def sigma(self, progress: float) -> float:
        o = self.options
        if o.anneal == "none":
            return o.sigma
        return o.sigma + (o.end_sigma - o.sigma) * min(max(progress, 0.0), 1.0)

    def transform_d_input(self, x: Tensor, progress: float) -> Tensor:
        sigma = self.sigma(progress)
        return x + sigma * torch.randn_like(x) if sigma > 0 else x


@hookimpl
def ganforge_register_regularizers(register):
    register(
        "spectral-norm",
        lambda options, ctx: SpectralNorm(options),
        options=SpectralNormOptions,
        summary="spectral normalisation of every conv/linear weight of D (optionally G)",
        traits={"spectral-norm", "graph-safe"},
        paper="Miyato et al. 2018, 'Spectral normalization for GANs'",
    )
    register(
        "label-smoothing",
        lambda options, ctx: LabelSmoothing(options),
        options=LabelSmoothingOptions,
        summary="one-sided label smoothing of D's real targets (BCE-family losses)",
        traits={"graph-safe"},
        conflicts={
            "wasserstein": "a Wasserstein critic has no targets to smooth; use a BCE-family loss"
        },
        paper="Salimans et al. 2016, 'Improved techniques for training GANs'",
    )
    register(
        "instance-noise",
        build_instance_noise,
        options=InstanceNoiseOptions,
        summary="Gaussian noise on D's inputs, annealed over the run",
        # Annealing reads the step, which a captured CUDA graph would freeze.
        traits=lambda o: {"stochastic"} | ({"graph-safe"} if o.anneal == "none" else set()),
        paper="Sønderby et al. 2017, 'Amortised MAP inference for image super-resolution'",
    )


def build_instance_noise(options: InstanceNoiseOptions, ctx: BuildContext) -> InstanceNoise:
    return InstanceNoise(options)
