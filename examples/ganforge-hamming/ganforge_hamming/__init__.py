"""ganforge-hamming: an example third-party ganforge plugin for data that is neither images nor 2-D points.

It adds, through ganforge's hooks alone, everything a run on 7-bit vectors needs:

* dataset ``hamming-7``, the 16 codewords of the Hamming(7,4) code as {-1, +1}
  vectors, with a picture of its own (``render=``);
* metric ``codewords``: the fraction of samples that are codewords, how many of
  the 16 are covered, and a KL divergence from the uniform;
* logger ``csv``: the logged statistics as CSV;
* regularizers ``z-path-length`` (StyleGAN2's, a lazy G penalty) and ``zero-gp``
  (a zero-centred gradient penalty on interpolates, a lazy D penalty);
* command ``ganforge codewords RUN``.

ganforge imports this module to list the plugin's commands, for ``ganforge
--help`` too, so it imports neither torch nor numpy: each factory imports its
module when a run builds the component.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganforge_core import Register, hookimpl
from ganforge_hamming.command import codewords
from ganforge_hamming.options import CodewordsOptions, CsvOptions, HammingOptions, PathLengthOptions, ZeroGPOptions

if TYPE_CHECKING:
    import typer
    from torch import Tensor

NEEDS_NO_BATCHNORM = (
    "BatchNorm ties each {what} to the whole batch, so the per-sample gradient the penalty constrains "
    "is not the network's; use a network without BatchNorm ({hint})"
)


def _factory(module: str, name: str) -> Callable[[Any, Any], Any]:
    """``factory(options, ctx)`` that imports ``ganforge_hamming.<module>`` when first called."""

    def build(options: Any, ctx: Any) -> Any:
        return getattr(import_module(f"ganforge_hamming.{module}"), name)(options, ctx)

    build.__qualname__ = build.__name__ = name
    return build


def render(samples: Tensor, path: Path, *, info: Mapping[str, Any], columns: int | None = None) -> None:
    """hamming-7's picture (see :mod:`ganforge_hamming.picture`)."""
    from ganforge_hamming.picture import render_codewords

    render_codewords(samples, path, info=info, columns=columns)


@hookimpl
def ganforge_register_datasets(register: Register) -> None:
    register(
        "hamming-7",
        _factory("dataset", "build_dataset"),
        options=HammingOptions,
        summary="the 16 Hamming(7,4) codewords as 7-vectors of -1/+1, drawn uniformly; bits flipped with flip=p",
        traits={"vector", "hamming-7"},
        render=render,
        paper="Hamming 1950, 'Error detecting and error correcting codes'",
    )


@hookimpl
def ganforge_register_metrics(register: Register) -> None:
    register(
        "codewords",
        _factory("metric", "build_metric"),
        options=CodewordsOptions,
        summary="hamming-7: fraction of samples that are codewords, codewords covered, KL from the uniform",
        requires={"hamming-7"},
    )


@hookimpl
def ganforge_register_loggers(register: Register) -> None:
    register(
        "csv",
        _factory("csv_logger", "build_logger"),
        options=CsvOptions,
        summary="logged statistics as CSV in the run directory (metrics.csv) and the final metrics in results.csv",
    )


@hookimpl
def ganforge_register_regularizers(register: Register) -> None:
    register(
        "z-path-length",
        _factory("path_length", "build_path_length"),
        options=PathLengthOptions,
        summary="StyleGAN2's path-length regularization of G on z, lazily every k steps (a G penalty)",
        traits={"graph-safe"},
        conflicts={"batchnorm-in-g": NEEDS_NO_BATCHNORM.format(what="sample", hint="--gen mlp:batchnorm=false")},
        paper="Karras et al. 2020, 'Analyzing and improving the image quality of StyleGAN', section 3.2",
    )
    register(
        "zero-gp",
        _factory("zero_gp", "build_zero_gp"),
        options=ZeroGPOptions,
        summary="zero-centred gradient penalty gamma/2 E||grad D(x_hat)||^2 on real-fake interpolates, lazily",
        # the core's traits of a penalty on D's input gradient, and of the batches it is computed on
        traits={"input-gradient-penalty", "penalty-on-real", "penalty-on-fake", "graph-safe"},
        conflicts={"batchnorm-in-d": NEEDS_NO_BATCHNORM.format(what="logit", hint="--disc dcgan:norm=layer, or mlp")},
        paper="Thanh-Tung et al. 2019, 'Improving generalization and stability of generative adversarial networks'",
    )


@hookimpl
def ganforge_register_commands(cli: typer.Typer) -> None:
    cli.command("codewords")(codewords)
