"""One run's objects: built from a resolved plan, saved to and loaded from checkpoints.

:class:`Run` holds the dataset on the training device, the networks (wrapped by
regularizers), the optimizers and the :class:`~ganforge_core.engine.Engine`; it
knows how to sample and evaluate, and how to turn all of that state into a
checkpoint of tensors and plain data and back.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ganforge_core import checkpoint as ckpt
from ganforge_core import distributed
from ganforge_core.batches import BatchSampler
from ganforge_core.components import BuildContext, Dataset, Regularizer
from ganforge_core.config import Chosen, Plan, RunConfig, resolve
from ganforge_core.engine import Engine, lazy_ratio, penalty_intervals
from ganforge_core.errors import CheckpointError, ConfigError
from ganforge_core.fastpath import choose_fast_path, pick_device
from ganforge_core.interpolation import fractions, slerp
from ganforge_core.plugins import Plugins
from ganforge_core.reporting import save_paths, save_samples
from ganforge_core.traincheck import Owners
from ganforge_core.version import __version__

SAMPLE_GRID = 64  # images in a sample grid
SAMPLE_CLOUD = 2500  # points in a 2D scatter (PacGAN evaluates this many)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Run:
    """One training run, built from a resolved plan."""

    def __init__(
        self, plan: Plan, plugins: Plugins, run_dir: Path, world: distributed.World = distributed.SOLO
    ) -> None:
        self.plan, self.plugins, self.run_dir = plan, plugins, run_dir
        self.world = world
        config = plan.config
        self.device = distributed.pick_device(world, config.device) if world.distributed else pick_device(config.device)
        seed_everything(config.seed)
        data_ctx = BuildContext(
            data_shape=(),
            num_classes=0,
            total_steps=config.steps,
            batch_size=config.batch_size,
            device=self.device,
            seed=config.seed,
        )
        self.dataset: Dataset = plan.dataset.component.build(plan.dataset.options, data_ctx)
        if config.batch_size > len(self.dataset):
            raise ConfigError(
                f"--batch-size {config.batch_size} exceeds the {len(self.dataset)} samples of "
                f"dataset '{config.dataset.name}'"
            )
        if config.conditional and self.dataset.labels is None:
            raise ConfigError(f"--conditional: dataset '{config.dataset.name}' returned no labels")
        self.ctx = BuildContext(
            data_shape=self.dataset.shape,
            num_classes=self.dataset.num_classes,
            total_steps=config.steps,
            batch_size=config.batch_size,
            device=self.device,
            seed=config.seed,
            loss_traits=plan.loss.traits,
            data_info=self.dataset.info,
            conditional=config.conditional,
        )
        self.regularizers: dict[str, Regularizer] = {
            r.component.name: r.component.build(r.options, self.ctx) for r in plan.regularizers
        }
        d_input_shape = self.dataset.shape
        for reg in self.regularizers.values():
            d_input_shape = reg.d_input_shape(d_input_shape)
        self.ctx.d_input_shape = d_input_shape
        generator = plan.generator.component.build(plan.generator.options, self.ctx)
        discriminator = plan.discriminator.component.build(plan.discriminator.options, self.ctx)
        for reg in self.regularizers.values():
            generator = reg.wrap_generator(generator)
            discriminator = reg.wrap_discriminator(discriminator)
        if world.distributed and config.sync_batchnorm:
            generator = distributed.sync_batchnorm(generator, self.device)
            discriminator = distributed.sync_batchnorm(discriminator, self.device)
        self.fast = choose_fast_path(plan, self.device, self.dataset.samples.dim())
        if world.distributed and self.fast.cuda_graph:
            self.fast = dataclasses.replace(
                self.fast, cuda_graph=False, graph_blocker="distributed training (DDP's all-reduces stay eager)"
            )
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = self.fast.cudnn_benchmark
        layout = torch.channels_last if self.fast.channels_last else torch.contiguous_format
        self.generator = generator.to(self.device, memory_format=layout)
        self.discriminator = discriminator.to(self.device, memory_format=layout)
        samples = self.dataset.samples.to(self.device).contiguous(memory_format=layout)
        labels = self.dataset.labels.to(self.device) if config.conditional else None
        assert config.lr_g is not None and config.lr_d is not None
        ddp: dict[str, Any] = {}
        if world.distributed:
            # Every rank built the same networks from the same seed (DDP also broadcasts
            # rank 0's). Latents: the stream a one-process run would use next, shared by all
            # ranks; everything else random: a stream per rank.
            ddp = {
                "world": world,
                # G's buffers (BatchNorm running statistics) follow rank 0's; D's are never
                # used in eval mode, so D's forward passes broadcast nothing.
                "train_generator": distributed.data_parallel(self.generator, self.device, sync_buffers=True),
                "train_discriminator": distributed.data_parallel(self.discriminator, self.device, sync_buffers=False),
                "latent_source": distributed.latent_generator(self.device),
            }
            seed_everything(distributed.rank_seed(config.seed, world.rank))
        owners = Owners(
            {
                **{c.component.kind: _owner(c) for c in (plan.generator, plan.discriminator, plan.loss)},
                **{f"regularizer:{r.component.name}": _owner(r) for r in plan.regularizers},
            }
        )
        lazy = {net: penalty_intervals(self.regularizers, net, owners).values() for net in ("g", "d")}
        self.engine = Engine(
            generator=self.generator,
            discriminator=self.discriminator,
            loss=plan.loss.component.build(plan.loss.options, self.ctx),
            regularizers=self.regularizers,
            schedule=plan.scheduler.component.build(plan.scheduler.options, self.ctx),
            opt_g=self._adam(self.generator, config.lr_g, lazy_ratio(lazy["g"])),
            opt_d=self._adam(self.discriminator, config.lr_d, lazy_ratio(lazy["d"])),
            batches=BatchSampler(samples, config.batch_size, config.seed, labels, shard=(world.rank, world.size)),
            total_steps=config.steps,
            autocast_dtype=self.fast.autocast,
            cuda_graph=self.fast.cuda_graph,
            skip_nonfinite=config.on_nan == "skip",
            owners=owners,
            **ddp,
        )
        fixed = torch.Generator().manual_seed(config.seed + 1)
        if self.dataset.samples.dim() == 2:
            shown = SAMPLE_CLOUD
        else:
            shown = 8 * self.dataset.num_classes if config.conditional else SAMPLE_GRID
        self.fixed_latents = torch.randn(shown, self.engine.z_dim, generator=fixed).to(self.device)
        # Conditional grids show the classes in order, one per column.
        self.fixed_labels = (
            torch.arange(shown, device=self.device) % self.dataset.num_classes if config.conditional else None
        )
        self.step = 0

    def _adam(self, network: nn.Module, lr: float, ratio: float = 1.0) -> torch.optim.Adam:
        """Adam with the run's betas. ``ratio`` is :func:`~ganforge_core.engine.lazy_ratio` of the
        network's lazy penalties: StyleGAN2 builds its Adam with ``lr * c`` and ``betas ** c``."""
        lr, betas = lr * ratio, (self.plan.config.betas[0] ** ratio, self.plan.config.betas[1] ** ratio)
        if not self.fast.cuda_graph:
            return torch.optim.Adam(network.parameters(), lr=lr, betas=betas, fused=self.fast.fused_adam or None)
        # A captured optimizer step reads its learning rate from the device.
        return torch.optim.Adam(
            network.parameters(),
            lr=torch.tensor(lr, device=self.device),
            betas=betas,
            fused=self.fast.fused_adam or None,
            capturable=True,
        )

    # -- state -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The run's state. Distributed: a collective (every rank's random streams are gathered)."""
        numpy_state = np.random.get_state()
        state = {
            "format": ckpt.FORMAT,
            "format_version": ckpt.FORMAT_VERSION,
            "ganforge_version": __version__,
            "step": self.step,
            "config": self.plan.config.model_dump_json(),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.engine.opt_g.state_dict(),
            "opt_d": self.engine.opt_d.state_dict(),
            "regularizers": {name: reg.state_dict() for name, reg in self.regularizers.items()},
            "batches": self.engine.batches.state_dict(),
            "skipped": dict(self.engine.skipped),
            "rng": {
                "python": random.getstate(),
                "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }
        if self.world.distributed:
            assert self.engine.latent_source is not None
            own = dict(state["rng"])
            state["world_size"] = self.world.size
            state["rng"]["ranks"] = self.world.gather(own)
            state["rng"]["latents"] = self.engine.latent_source.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        try:
            self.generator.load_state_dict(state["generator"])
            self.discriminator.load_state_dict(state["discriminator"])
            for opt, key in ((self.engine.opt_g, "opt_g"), (self.engine.opt_d, "opt_d")):
                _load_optimizer(opt, state[key])
            for name, reg in self.regularizers.items():
                reg.load_state_dict(state["regularizers"].get(name, {}))
            self.engine.batches.load_state_dict(state["batches"])
            self.engine.skipped.update(state.get("skipped", {}))
        except (KeyError, RuntimeError, ValueError) as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [repr(exc)]
            # torch's first line names the module; the second names the first mismatch.
            raise CheckpointError(f"{source} does not fit this run's networks: {' '.join(lines[:2])}") from None
        self.step = int(state["step"])
        self._load_random_state(state["rng"])

    def _load_random_state(self, rng: dict[str, Any]) -> None:
        world, saved_ranks = self.world, rng.get("ranks")
        same_world = world.distributed and saved_ranks is not None and len(saved_ranks) == world.size
        own = saved_ranks[world.rank] if same_world else rng
        random.setstate(_as_python_state(own["python"]))
        np.random.set_state((own["numpy"][0], own["numpy"][1].numpy().astype(np.uint32), *own["numpy"][2:]))
        torch.set_rng_state(own["torch"])
        if own["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(own["cuda"])
        latents = rng.get("latents")
        # A CPU generator's state and a CUDA one's differ in size: use a saved stream only
        # on the kind of device it was drawn on.
        on_cpu = self.device.type == "cpu"
        if latents is not None and (latents.numel() == rng["torch"].numel()) != on_cpu:
            latents = None
        if world.distributed:
            source = self.engine.latent_source
            assert source is not None
            if latents is None and not saved_ranks:  # a one-process checkpoint: z continues its stream
                cuda_states = own["cuda"]
                latents = own["torch"] if on_cpu else cuda_states[0] if cuda_states else None
            if latents is not None:
                source.set_state(latents)
            else:
                source.manual_seed(distributed.shared_seed(self.plan.config.seed, self.step))
            if not same_world:  # another world size: a fresh stream per rank
                seed_everything(distributed.rank_seed(self.plan.config.seed, world.rank, self.step))
        elif latents is not None:  # a distributed checkpoint in one process: z continues its stream
            if on_cpu:
                torch.set_rng_state(latents)
            else:
                torch.cuda.set_rng_state(latents, self.device)

    def save_checkpoint(self, state: dict[str, Any] | None = None) -> Path:
        """Write ``state`` (default: :meth:`state_dict`) as this step's checkpoint; prune old ones."""
        path = ckpt.checkpoint_path(self.run_dir, self.step)
        ckpt.save_atomic(self.state_dict() if state is None else state, path)
        ckpt.prune(self.run_dir, self.plan.config.keep_checkpoints, newest=self.step)
        return path

    # -- sampling ----------------------------------------------------------------

    def sampler(self, ema: bool = True) -> nn.Module:
        """The generator to sample and evaluate with: an EMA copy if a regularizer keeps one."""
        for reg in self.regularizers.values() if ema else ():
            replacement = reg.sampling_generator()
            if replacement is not None:
                return replacement
        return self.generator

    @torch.no_grad()
    def generate(
        self, n: int, latents: Tensor | None = None, labels: Tensor | None = None, ema: bool = True
    ) -> Tensor:
        """``n`` samples on the CPU, with G in eval mode (BatchNorm running statistics).

        Conditional runs draw labels uniformly unless ``labels`` are given.
        """
        generator = self.sampler(ema)
        was_training = generator.training
        generator.eval()
        try:
            chunks = []
            for start in range(0, n, 1024):
                size = min(1024, n - start)
                z = latents[start : start + size] if latents is not None else self.engine.latents(size)
                if self.plan.config.conditional:
                    y = labels[start : start + size] if labels is not None else torch.randint(
                        self.dataset.num_classes, (size,), device=self.device
                    )
                    chunks.append(generator(z, y).float().cpu())
                else:
                    chunks.append(generator(z).float().cpu())
            return torch.cat(chunks)
        finally:
            generator.train(was_training)

    def save_samples(self, name: str) -> Path:
        path = self.run_dir / name
        # Fixed latents: no draw from the training RNG stream (exact resume), and
        # successive grids show the same latents as training goes on.
        samples = self.generate(len(self.fixed_latents), self.fixed_latents, self.fixed_labels)
        columns = self.dataset.num_classes if self.fixed_labels is not None else None
        save_samples(samples, path, self.dataset.info, columns=columns)
        return path

    def evaluate(self, metric_names: list[str] | None = None) -> dict[str, float]:
        """The plan's metrics (or the named ones), on their own RNG stream."""
        chosen = self.plan.metrics
        if metric_names:
            chosen = tuple(self._named_metric(text) for text in metric_names)
        results: dict[str, float] = {}
        shared = SharedSamples(self.generate)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.plan.config.seed + 2)
            for metric in chosen:
                missing = metric.component.requires - self.plan.dataset.traits
                if missing:
                    raise ConfigError(
                        f"{metric.component.label} needs a {'/'.join(sorted(missing))} dataset; "
                        f"this run trained on '{self.plan.dataset.component.name}'"
                    )
                values = metric.component.build(metric.options, self.ctx).compute(shared, self.dataset)
                results.update({f"{metric.component.name}/{k}": float(v) for k, v in values.items()})
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

    def draw(self, n: int, seed: int, label: int | None = None, ema: bool = True) -> Tensor:
        """``n`` samples from fresh latents seeded by ``seed`` (for ``ganforge sample``)."""
        latents, labels = self._draw_inputs(n, seed, label)
        return self.generate(n, latents, labels, ema=ema)

    def _draw_inputs(self, n: int, seed: int, label: int | None) -> tuple[Tensor, Tensor | None]:
        conditional = self.plan.config.conditional
        if label is not None and not conditional:
            raise ConfigError("--label needs a run trained with --conditional")
        if label is not None and not 0 <= label < self.dataset.num_classes:
            raise ConfigError(f"--label must be in [0, {self.dataset.num_classes}), got {label}")
        source = torch.Generator().manual_seed(seed)
        latents = torch.randn(n, self.engine.z_dim, generator=source).to(self.device)
        labels = None
        if conditional:
            labels = (
                torch.full((n,), label)
                if label is not None
                else torch.randint(self.dataset.num_classes, (n,), generator=source)
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
        latents, labels = self._draw_inputs(2 * rows, seed, label)
        paths = slerp(latents[:rows].cpu(), latents[rows:].cpu(), fractions(steps)).to(self.device)
        return paths, None if labels is None else labels[:rows]

    def interpolate(self, rows: int, steps: int, seed: int, label: int | None = None, ema: bool = True) -> Tensor:
        """Samples [rows, steps, *data shape] along :meth:`interpolation_inputs`' latents."""
        paths, labels = self.interpolation_inputs(rows, steps, seed, label)
        flat_labels = None if labels is None else labels.repeat_interleave(steps)
        samples = self.generate(rows * steps, paths.flatten(0, 1), flat_labels, ema=ema)
        return samples.unflatten(0, (rows, steps))

    def write_samples(self, samples: Tensor, path: Path) -> None:
        """Raw samples as .pt or .npy; otherwise a picture: a grid, a 2D scatter, or (for
        :meth:`interpolate`'s [rows, steps, ...] samples) one row per path or 2D paths."""
        interpolated = samples.dim() == len(self.dataset.shape) + 2
        if path.suffix not in {".pt", ".npy"} and self.dataset.shape != (2,) and len(self.dataset.shape) != 3:
            raise ConfigError(
                f"a picture shows images or 2D points, not samples of shape {list(self.dataset.shape)}; "
                f"write them to a .pt or .npy file"
            )
        if path.suffix == ".pt":
            torch.save(samples, path)
        elif path.suffix == ".npy":
            np.save(path, samples.numpy())
        elif interpolated and samples.dim() == 3:
            save_paths(samples, path, self.dataset.info)
        elif interpolated:
            save_samples(samples.flatten(0, 1), path, self.dataset.info, columns=samples.shape[1])
        else:
            save_samples(samples, path, self.dataset.info)


def _owner(chosen: Chosen) -> str:
    """How train-time contract errors name a component: ``plugin 'p': loss 'name'``."""
    return f"plugin '{chosen.component.plugin}': {chosen.component.label}"


def _load_optimizer(opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load optimizer state, keeping the learning rate's type (float, or a device tensor)."""
    kinds = [group["lr"] for group in opt.param_groups]
    opt.load_state_dict(state)
    for group, before in zip(opt.param_groups, kinds, strict=True):
        if isinstance(before, Tensor):
            group["lr"] = torch.as_tensor(group["lr"], dtype=before.dtype, device=before.device)
        else:
            group["lr"] = float(group["lr"])


def _as_python_state(value: Any) -> tuple[Any, ...]:
    version, internal, gauss = value
    return version, tuple(internal), gauss


def load_run(source: Path, plugins: Plugins, device: str = "auto") -> Run:
    """A run rebuilt from a run directory (its newest loadable checkpoint) or a checkpoint file."""
    if source.is_dir():
        path, state, _ = ckpt.latest_loadable(source)
    else:
        path, state = source, ckpt.load_safe(source)
    try:
        config = RunConfig.model_validate({**json.loads(state["config"]), "device": device})
    except (TypeError, ValueError):
        raise CheckpointError(f"{path} holds no valid run configuration") from None
    run = Run(resolve(config, plugins.registry), plugins, path.parent)
    run.load_state_dict(state, path)
    return run


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
