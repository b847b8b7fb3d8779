"""A trained generator, rebuilt from a checkpoint to sample, evaluate and export.

:func:`load_trained` builds only what drawing samples needs: the generator,
wrapped by the run's regularizers as in training and loaded from the
checkpoint, and the regularizers' state (so that an EMA copy samples when the
run kept one). It builds no discriminator, no optimizer and no
:class:`~ganforge_core.engine.Engine`. The data's shape, classes and ``info``
come from the checkpoint's ``data`` entry (see :func:`data_record`); the
dataset itself is built only for a checkpoint without that entry (written by
an older ganforge, or by a dataset whose ``info`` is not plain data), and by
:meth:`Trained.evaluate`, since metrics compare against the real data.

:class:`~ganforge_core.run.Run` is a :class:`Trained` that also trains: it
samples and evaluates with the methods below.
"""

from __future__ import annotations

import json
import math
import random
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ganforge_core import checkpoint as ckpt
from ganforge_core import waiting
from ganforge_core.components import BuildContext, Dataset, Regularizer
from ganforge_core.config import Chosen, Plan, RunConfig, resolve
from ganforge_core.errors import CheckpointError, ConfigError
from ganforge_core.fastpath import pick_device
from ganforge_core.interpolation import fractions, slerp
from ganforge_core.reporting import render_interpolation, render_samples
from ganforge_core.traits import declared_traits

if TYPE_CHECKING:
    from ganforge_core.plugins import Plugins

PLAIN = (bool, int, float, str, type(None))
SAMPLE_BUDGET = 4 * 2**30  # bytes of float32 samples and latents that draw and interpolate hold at once


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_dataset(plan: Plan, device: torch.device) -> Dataset:
    """The plan's dataset, built as a run builds it (first thing after seeding with the run's seed), and checked."""
    config = plan.config
    seed_everything(config.seed)
    data_ctx = BuildContext(
        data_shape=(),
        num_classes=0,
        total_steps=config.steps,
        batch_size=config.batch_size,
        device=device,
        seed=config.seed,
    )
    with waiting.progress(f"loading dataset {plan.dataset.component.name}"):  # its own bars nest under this
        dataset: Dataset = plan.dataset.component.build(plan.dataset.options, data_ctx)
    if config.batch_size > len(dataset):
        raise ConfigError(
            f"--batch-size {config.batch_size} exceeds the {len(dataset)} samples of dataset '{config.dataset.name}'"
        )
    if config.conditional and dataset.labels is None:
        raise ConfigError(f"--conditional: dataset '{config.dataset.name}' returned no labels")
    return dataset


def data_record(dataset: Dataset) -> dict[str, Any]:
    """What a checkpoint keeps of its dataset, so that sampling needs no dataset.

    ``info`` is kept when it is plain data and tensors (what ``weights_only``
    loading accepts), else recorded as ``None``: a loader then builds the dataset.
    """
    return {
        "shape": list(dataset.shape),
        "num_classes": int(dataset.num_classes),
        "info": dict(dataset.info) if _plain(dataset.info) else None,
    }


def _plain(value: Any) -> bool:
    # Exact types: a numpy scalar is a float subclass and a namedtuple a tuple subclass,
    # and weights_only loading refuses both.
    if type(value) in PLAIN or isinstance(value, Tensor):
        return True
    if type(value) in (list, tuple):
        return all(_plain(item) for item in value)
    if type(value) is dict:
        return all(type(key) in (str, int) and _plain(item) for key, item in value.items())
    return False


def read_checkpoint(source: Path, device: str) -> tuple[Path, dict[str, Any], RunConfig]:
    """The checkpoint (a file, or a run directory's newest loadable one), its state and its configuration."""
    if source.is_dir():
        path, state, _ = ckpt.latest_loadable(source)
    else:
        path, state = source, ckpt.load_safe(source)
    # load_safe checked the stored configuration: a ValidationError here is --device's.
    return path, state, RunConfig.model_validate({**json.loads(state["config"]), "device": device})


def misfit(source: Path, exc: Exception, part: str = "") -> CheckpointError:
    """A one-line error for a checkpoint whose tensors do not fit the networks built for it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [repr(exc)]
    # torch's first line names the module; the second names the first mismatch.
    where = f" ({part})" if part else ""
    return CheckpointError(f"{source} does not fit this run's networks{where}: {' '.join(lines[:2])}")


def load_regularizers(regularizers: dict[str, Regularizer], state: dict[str, Any], source: Path) -> None:
    """Each regularizer's state from the checkpoint. A plugin's ``load_state_dict`` that
    raises on what the file holds (an EMA copy of the wrong shape) is a misfit, one line."""
    for name, reg in regularizers.items():
        try:
            reg.load_state_dict(state["regularizers"].get(name, {}))
        except Exception as exc:  # noqa: BLE001 - a plugin's code meets the file's contents
            raise misfit(source, exc, f"regularizer {name!r}") from None


def load_trained(
    source: Path | str,
    plugins: Plugins | None = None,
    device: str = "auto",
    warn: Callable[[str], None] | None = None,
) -> Trained:
    """The trained generator of a run directory, a checkpoint file or an ``export`` directory.

    Of a run directory, the newest checkpoint that loads and fits the networks its
    configuration builds: each newer one is passed over with ``warn(line)`` (default:
    :func:`warnings.warn`), a line naming both files. An export directory (its
    ``config.json`` and ``model.safetensors``, or a format-1 export's ``generator.json``
    and ``generator.safetensors``) holds one generator, the EMA copy
    when the run kept one, and no dataset ``info``.
    """
    from ganforge_core.plugins import get_plugins

    plugins = plugins or get_plugins()
    source = Path(source)
    exported = export_directory(source)
    if exported is not None:
        return _from_export(exported, plugins, device)
    if not source.is_dir():
        return _from_checkpoint(source, ckpt.load_safe(source), plugins, device)
    trained, used, passed = ckpt.newest_that_fits(
        source, lambda path, state: _from_checkpoint(path, state, plugins, device)
    )
    for line in ckpt.passed_over(passed, used):
        if warn is None:
            warnings.warn(line, stacklevel=2)
        else:
            warn(line)
    return trained


def export_directory(source: Path) -> Path | None:
    """The export directory ``source`` names (the directory, or one of its two files), if it is one:
    it holds an export's ``config.json`` (``generator.json`` in format 1) and no checkpoint."""
    from ganforge_core import export

    names = {name for layout in export.LAYOUTS.values() for name in layout}
    configs = [layout[0] for layout in export.LAYOUTS.values()]
    directory = source.parent if source.name in names else source
    if (
        directory.is_dir()
        and any((directory / name).is_file() for name in configs)
        and not ckpt.list_checkpoints(directory)
    ):
        return directory
    return None


def _from_export(directory: Path, plugins: Plugins, device: str) -> Trained:
    from ganforge_core import export

    described = export.read_config(directory)
    try:
        RunConfig.model_validate(described["run_config"])
        shape, num_classes = tuple(int(size) for size in described["data_shape"]), int(described["num_classes"])
        step, ema = int(described["step"]), bool(described["ema"])
    except (KeyError, TypeError, ValueError):  # a ValidationError is a ValueError
        raise CheckpointError(
            f"{directory / export.LAYOUTS[described['format_version']][0]} lacks a valid run configuration, data shape, classes or step"
        ) from None
    config = RunConfig.model_validate({**described["run_config"], "device": device})  # --device's error
    plan = resolve(config, plugins.registry)
    on = pick_device(config.device)
    ctx = BuildContext(
        data_shape=shape,
        num_classes=num_classes,
        total_steps=config.steps,
        batch_size=config.batch_size,
        device=on,
        seed=config.seed,
        loss_traits=plan.loss.traits,
        conditional=config.conditional,
    )
    generator = export.load_generator(directory, on, plugins)
    return Trained(plan, plugins, directory, ctx, generator, {}, step=step, ema_only=ema)


def _from_checkpoint(path: Path, state: dict[str, Any], plugins: Plugins, device: str) -> Trained:
    # load_safe checked the stored configuration: a ValidationError here is --device's.
    config = RunConfig.model_validate({**json.loads(state["config"]), "device": device})
    plan = resolve(config, plugins.registry)
    on = pick_device(config.device)
    data, dataset = state.get("data"), None
    if data is None or data.get("info") is None:
        dataset = build_dataset(plan, on)
        data = data_record(dataset) | {"info": dataset.info}
    ctx = BuildContext(
        data_shape=tuple(int(size) for size in data["shape"]),
        num_classes=int(data["num_classes"]),
        total_steps=config.steps,
        batch_size=config.batch_size,
        device=on,
        seed=config.seed,
        loss_traits=plan.loss.traits,
        data_info=data["info"],
        conditional=config.conditional,
    )
    regularizers: dict[str, Regularizer] = {
        r.component.name: r.component.build(r.options, ctx) for r in plan.regularizers
    }
    d_input_shape = ctx.data_shape
    for reg in regularizers.values():
        d_input_shape = reg.d_input_shape(d_input_shape)
    ctx.d_input_shape = d_input_shape
    generator = plan.generator.component.build(plan.generator.options, ctx)
    for reg in regularizers.values():
        generator = reg.wrap_generator(generator)
    generator = generator.to(on)
    try:
        generator.load_state_dict(state["generator"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise misfit(path, exc) from None
    load_regularizers(regularizers, state, path)
    return Trained(plan, plugins, path.parent, ctx, generator, regularizers, dataset, step=int(state["step"]))


class Trained:
    """A trained generator and what drawing from it needs: sample, interpolate, write, evaluate.

    ``ctx`` is the :class:`BuildContext` the generator was built with; it holds the
    data's shape, classes and info. ``dataset`` is ``None`` until :meth:`load_dataset`.
    """

    def __init__(
        self,
        plan: Plan,
        plugins: Plugins,
        run_dir: Path,
        ctx: BuildContext,
        generator: nn.Module,
        regularizers: dict[str, Regularizer],
        dataset: Dataset | None = None,
        step: int = 0,
        ema_only: bool = False,
    ) -> None:
        self.plan, self.plugins, self.run_dir, self.ctx = plan, plugins, run_dir, ctx
        self.device = ctx.device
        self.generator = generator
        self.regularizers = regularizers
        self.dataset = dataset
        self.step = step
        self.ema_only = ema_only  # an export of the EMA copy: G's own weights are not here
        # getattr: nn.Module types its attributes as Tensor | Module; a generator's z_dim is an int
        self.z_dim = int(getattr(generator, "z_dim"))

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.ctx.data_shape)

    @property
    def num_classes(self) -> int:
        return self.ctx.num_classes

    @property
    def data_info(self) -> dict[str, Any]:
        return dict(self.ctx.data_info)

    def load_dataset(self) -> Dataset:
        """The run's dataset, built once on first use."""
        if self.dataset is None:
            self.dataset = build_dataset(self.plan, self.device)
        return self.dataset

    def latents(self, n: int) -> Tensor:
        return torch.randn(n, self.z_dim, device=self.device)

    # -- sampling ----------------------------------------------------------------

    def sampler(self, ema: bool = True) -> nn.Module:
        """The generator to sample and evaluate with: an EMA copy if a regularizer keeps one.

        A generator of the trait ``growing`` is grown to :attr:`step` first (``Growing.grow``).
        """
        if not ema and self.ema_only:
            raise ConfigError(
                f"--no-ema: {self.run_dir} is an export of the EMA generator alone; G's own weights are "
                "in the run directory (or export them with 'ganforge export --no-ema')"
            )
        chosen = self.generator
        for reg in self.regularizers.values() if ema else ():
            replacement = reg.sampling_generator()
            if replacement is not None:
                chosen = replacement
                break
        if "growing" in self.plan.generator.traits:
            # getattr: nn.Module types its attributes as Tensor | Module; grow is a method (traincheck.grows)
            getattr(chosen, "grow")(self.step, self.ctx.total_steps)
        return chosen

    @torch.no_grad()
    def generate(
        self,
        n: int,
        latents: Tensor | None = None,
        labels: Tensor | None = None,
        ema: bool = True,
        truncation: float | None = None,
    ) -> Tensor:
        """``n`` samples on the CPU, with G in eval mode (BatchNorm running statistics).

        Conditional runs draw labels uniformly unless ``labels`` are given. ``truncation``
        is psi for a generator of the trait ``truncation`` (None: the run's own).
        """
        generator = self.sampler(ema)
        was_training = generator.training
        psi = getattr(generator, "truncation_psi", None)
        if truncation is not None:
            self._check_truncation(truncation)
            setattr(generator, "truncation_psi", truncation)  # a plain attribute, read in eval mode
        generator.eval()
        try:
            chunks = []
            for start in range(0, n, 1024):
                size = min(1024, n - start)
                z = latents[start : start + size] if latents is not None else self.latents(size)
                if self.plan.config.conditional:
                    y = labels[start : start + size] if labels is not None else torch.randint(
                        self.num_classes, (size,), device=self.device
                    )
                    chunks.append(generator(z, y).float().cpu())
                else:
                    chunks.append(generator(z).float().cpu())
            return torch.cat(chunks)
        finally:
            generator.train(was_training)
            if truncation is not None:
                setattr(generator, "truncation_psi", psi)

    def _check_truncation(self, psi: float) -> None:
        if "truncation" not in self.plan.generator.traits:
            generators = self.plugins.registry.all("generator")
            having = sorted(c.name for c in generators if "truncation" in declared_traits(c))
            raise ConfigError(
                f"--truncation: {self.plan.generator.component.label} has no truncation trick; "
                f"generators that have it: {', '.join(having) or 'none installed'}"
            )
        if not (math.isfinite(psi) and 0 <= psi <= 2):
            raise ConfigError(f"--truncation must be a number from 0 to 2 (1: no truncation), got {psi}")

    def evaluate(self, metric_names: list[str] | None = None) -> dict[str, float]:
        """The plan's metrics (or the named ones), on their own RNG stream, against the real data."""
        chosen = self.plan.metrics
        if metric_names:
            chosen = tuple(self._named_metric(text) for text in metric_names)
        results: dict[str, float] = {}
        shared = SharedSamples(self.generate)
        dataset = self.load_dataset()  # first: building it seeds the RNGs as a run does
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), waiting.progress("evaluating", total=len(chosen)) as wait:
            torch.manual_seed(self.plan.config.seed + 2)
            for metric in chosen:
                missing = metric.component.requires - self.plan.dataset.traits
                if missing:
                    raise ConfigError(
                        f"{metric.component.label} needs a {'/'.join(sorted(missing))} dataset; "
                        f"this run trained on '{self.plan.dataset.component.name}'"
                    )
                wait.describe(f"evaluating {metric.component.name}")
                values = metric.component.build(metric.options, self.ctx).compute(shared, dataset)
                results.update({f"{metric.component.name}/{k}": float(v) for k, v in values.items()})
                wait.advance()
        return results

    def _named_metric(self, text: str) -> Chosen:
        """A metric named as on the command line: ``NAME`` or ``NAME:key=value,...``."""
        from ganforge_core.config import parse_choice

        try:
            choice = parse_choice(text)
        except ValueError as exc:
            raise ConfigError(f"--metric {text}: {exc}") from None
        component = self.plugins.registry.get("metric", choice["name"])
        return Chosen(component, component.validate(choice["options"]))

    def draw(
        self, n: int, seed: int, label: int | None = None, ema: bool = True, truncation: float | None = None
    ) -> Tensor:
        """``n`` samples from fresh latents seeded by ``seed`` (for ``ganforge sample``)."""
        self._check_size(n, f"--n {n}")
        latents, labels = self._draw_inputs(n, seed, label)
        return self.generate(n, latents, labels, ema=ema, truncation=truncation)

    def _check_size(self, count: int, asked: str) -> None:
        """Refuse, before allocating, more samples than :data:`SAMPLE_BUDGET` holds."""
        most = SAMPLE_BUDGET // (4 * (math.prod(self.data_shape) + self.z_dim))
        if count > most:
            raise ConfigError(
                f"{asked} asks for {count:,} samples; at most {most:,} of shape {list(self.data_shape)} "
                f"fit in the {SAMPLE_BUDGET // 2**30} GiB sampling limit: draw fewer"
            )

    def _draw_inputs(self, n: int, seed: int, label: int | None) -> tuple[Tensor, Tensor | None]:
        conditional = self.plan.config.conditional
        if label is not None and not conditional:
            raise ConfigError("--label needs a run trained with --conditional")
        if label is not None and not 0 <= label < self.num_classes:
            raise ConfigError(f"--label must be in [0, {self.num_classes}), got {label}")
        source = torch.Generator().manual_seed(seed)
        latents = torch.randn(n, self.z_dim, generator=source).to(self.device)
        labels = None
        if conditional:
            labels = (
                torch.full((n,), label)
                if label is not None
                else torch.randint(self.num_classes, (n,), generator=source)
            ).to(self.device)
        return latents, labels

    def interpolation_inputs(
        self, rows: int, steps: int, seed: int, label: int | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Latents [rows, steps, z_dim] and one label per row (conditional runs) for ``--interpolate``.

        Row i goes, by :func:`~ganforge_core.interpolation.slerp`, from the latent of
        sample i to that of sample ``rows + i`` of ``draw(2 * rows, seed, label)``,
        with sample i's class all along.
        """
        if steps < 2:
            raise ConfigError(f"--interpolate must be at least 2 (the two ends of each row), got {steps}")
        self._check_size(rows * steps, f"--n {rows} rows of --interpolate {steps}")
        latents, labels = self._draw_inputs(2 * rows, seed, label)
        paths = slerp(latents[:rows].cpu(), latents[rows:].cpu(), fractions(steps)).to(self.device)
        return paths, None if labels is None else labels[:rows]

    def interpolate(
        self,
        rows: int,
        steps: int,
        seed: int,
        label: int | None = None,
        ema: bool = True,
        truncation: float | None = None,
    ) -> Tensor:
        """Samples [rows, steps, *data shape] along :meth:`interpolation_inputs`' latents."""
        paths, labels = self.interpolation_inputs(rows, steps, seed, label)
        flat_labels = None if labels is None else labels.repeat_interleave(steps)
        samples = self.generate(rows * steps, paths.flatten(0, 1), flat_labels, ema=ema, truncation=truncation)
        return samples.unflatten(0, (rows, steps))

    def write_samples(self, samples: Tensor, path: Path) -> None:
        """Raw samples as .pt or .npy; otherwise a picture (see
        :func:`~ganforge_core.reporting.render_samples`), or for :meth:`interpolate`'s
        [rows, steps, ...] samples :func:`~ganforge_core.reporting.render_interpolation`'s."""
        dataset = self.plan.dataset.component
        if path.suffix == ".pt":
            torch.save(samples, path)
        elif path.suffix == ".npy":
            np.save(path, samples.numpy())
        elif samples.dim() == len(self.data_shape) + 2:
            render_interpolation(samples, path, info=self.data_info, dataset=dataset)
        else:
            real = self._real_samples(len(samples))
            render_samples(samples, path, info=self.data_info, dataset=dataset, real=real)

    def _real_samples(self, n: int) -> Tensor | None:
        """``n`` (at most) real samples spread evenly over the dataset, drawn with no RNG;
        None when the dataset was not loaded (sampling does not load it)."""
        if self.dataset is None:
            return None
        return self.dataset.evenly_spaced(n)


class SharedSamples:
    """One set of generated samples shared by every metric of an evaluation.

    A metric asking for ``n`` samples gets the first ``n`` drawn so far, drawing
    more only when it needs more: FID, KID and precision/recall then score the
    same images (as torch-fidelity and most papers do), and an evaluation draws
    max(n) samples instead of their sum.
    """

    def __init__(self, generate: Callable[[int], Tensor]) -> None:
        self._generate = generate
        self._samples: Tensor | None = None

    def __call__(self, n: int) -> Tensor:
        have = 0 if self._samples is None else len(self._samples)
        if n > have:
            more = self._generate(n - have)
            self._samples = more if self._samples is None else torch.cat([self._samples, more])
        assert self._samples is not None
        return self._samples[:n]
