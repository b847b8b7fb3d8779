"""One run's objects: built from a resolved plan, saved to and loaded from checkpoints.

:class:`Run` holds the dataset on the training device, the networks (wrapped by
regularizers), the optimizers and the :class:`~ganforge_core.engine.Engine`, and
turns all of that state into a checkpoint of tensors and plain data and back. It
samples and evaluates as a :class:`~ganforge_core.trained.Trained` does (it is
one); to sample from a checkpoint, :func:`~ganforge_core.trained.load_trained`
builds only the generator.
"""

from __future__ import annotations

import dataclasses
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ganforge_core import checkpoint as ckpt
from ganforge_core import distributed, residency, traincheck
from ganforge_core.components import BuildContext, Dataset, Regularizer
from ganforge_core.config import Chosen, Plan, resolve, with_epochs_as_steps
from ganforge_core.engine import Engine, lazy_ratio, penalty_intervals
from ganforge_core.fastpath import choose_fast_path, cpu_layout_blocker, pick_device
from ganforge_core.plugins import Plugins
from ganforge_core.pictures import is_image
from ganforge_core.reporting import render_samples
from ganforge_core.trained import (
    Trained,
    build_dataset,
    data_record,
    load_regularizers,
    misfit,
    read_checkpoint,
    seed_everything,
)
from ganforge_core.traincheck import Owners
from ganforge_core.version import __version__

SAMPLE_GRID = 64  # images in a sample grid
SAMPLE_CLOUD = 2500  # samples in a 2D scatter (PacGAN evaluates this many) or histograms of other data


class Run(Trained):
    """One training run, built from a resolved plan."""

    def __init__(
        self, plan: Plan, plugins: Plugins, run_dir: Path, world: distributed.World = distributed.SOLO
    ) -> None:
        self.world = world
        device = plan.config.device
        self.device = distributed.pick_device(world, device) if world.distributed else pick_device(device)
        self.dataset: Dataset = build_dataset(plan, self.device)
        # --epochs becomes steps here, where the dataset's size is known; the run's first line shows it.
        # (an epoch of --mirror data shows every image twice, once flipped).
        mirrored = 2 if plan.config.mirror else 1
        plan, self.length_note = with_epochs_as_steps(plan, len(self.dataset) * mirrored)
        config = plan.config
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
        self.fast = choose_fast_path(plan, self.device, len(self.dataset.shape) + 1)
        if world.distributed and self.fast.cuda_graph:
            self.fast = dataclasses.replace(
                self.fast, cuda_graph=False, graph_blocker="distributed training (DDP's all-reduces stay eager)"
            )
        if self.device.type == "cpu" and self.fast.channels_last:
            note = cpu_layout_blocker(plan, self.regularizers, (generator, discriminator))
            if note:
                self.fast = dataclasses.replace(self.fast, channels_last=False, layout_note=note)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = self.fast.cudnn_benchmark
        layout = torch.channels_last if self.fast.channels_last else torch.contiguous_format
        # From here on the run samples as a Trained (plan, G, regularizers, data).
        on_device = generator.to(self.device, memory_format=layout)
        super().__init__(plan, plugins, run_dir, self.ctx, on_device, self.regularizers, self.dataset)
        self.discriminator = discriminator.to(self.device, memory_format=layout)
        self.residency = residency.choose(self.dataset, self.device, config.data_mode, config.data_workers)
        batches = residency.make_batches(
            self.dataset,
            self.residency,
            self.device,
            config.batch_size,
            config.seed,
            conditional=config.conditional,  # build_dataset refuses --conditional on data without labels
            shard=(world.rank, world.size),
            mirror=config.mirror,
            layout=layout,
        )
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
                **{
                    c.component.kind: _owner(c)
                    for c in (plan.generator, plan.discriminator, plan.loss, plan.scheduler)
                },
                **{f"regularizer:{r.component.name}": _owner(r) for r in plan.regularizers},
            }
        )
        lazy = {net: penalty_intervals(self.regularizers, net, owners).values() for net in ("g", "d")}
        growing: list[nn.Module] = []  # networks of the trait 'growing': the engine grows them each step
        for network, chosen in ((self.generator, plan.generator), (self.discriminator, plan.discriminator)):
            if "growing" in chosen.traits:
                traincheck.grows(network, _owner(chosen))
                growing.append(network)
        self.engine = Engine(
            generator=self.generator,
            discriminator=self.discriminator,
            loss=plan.loss.component.build(plan.loss.options, self.ctx),
            regularizers=self.regularizers,
            schedule=plan.scheduler.component.build(plan.scheduler.options, self.ctx),
            opt_g=self._adam(self.generator, config.lr_g, lazy_ratio(lazy["g"])),
            opt_d=self._adam(self.discriminator, config.lr_d, lazy_ratio(lazy["d"])),
            batches=batches,
            total_steps=config.steps,
            autocast_dtype=self.fast.autocast,
            cuda_graph=self.fast.cuda_graph,
            skip_nonfinite=config.on_nan == "skip",
            owners=owners,
            growing=growing,
            per_sample_critic="per-sample" in plan.discriminator.traits,
            scheduled_beta2=(config.betas or (0.0, 0.0))[1] if "beta2-schedule" in plan.scheduler.traits else None,
            **ddp,
        )
        fixed = torch.Generator().manual_seed(config.seed + 1)
        if not is_image(self.dataset.shape):
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
        beta1, beta2 = self.plan.config.betas or (0.0, 0.0)  # resolve() fills the betas in: never the fallback
        lr, betas = lr * ratio, (beta1**ratio, beta2**ratio)
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
        numpy_state = np.random.get_state(legacy=True)
        assert isinstance(numpy_state, tuple)  # legacy: the Mersenne Twister's (name, keys, pos, gauss, cached)
        state = {
            "format": ckpt.FORMAT,
            "format_version": ckpt.FORMAT_VERSION,
            "ganforge_version": __version__,
            "step": self.step,
            "config": self.plan.config.model_dump_json(),
            "data": data_record(self.dataset),  # what load_trained needs instead of the dataset
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
                try:
                    _load_optimizer(opt, state[key])
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None
            self.engine.batches.load_state_dict(state["batches"])
            self.engine.skipped.update(state.get("skipped", {}))
        except (KeyError, RuntimeError, ValueError) as exc:
            raise misfit(source, exc) from None
        load_regularizers(self.regularizers, state, source)
        self.step = int(state["step"])
        self._load_random_state(state["rng"])

    def _load_random_state(self, rng: dict[str, Any]) -> None:
        world, saved_ranks = self.world, rng.get("ranks")
        same_world = world.distributed and saved_ranks is not None and len(saved_ranks) == world.size
        own = saved_ranks[world.rank] if same_world and saved_ranks is not None else rng
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

    def close(self) -> None:
        """Stop what the run runs beside this process: a streamed sampler's DataLoader workers."""
        self.engine.batches.close()

    def save_samples(self, name: str) -> Path:
        path = self.run_dir / name
        # Fixed latents: no draw from the training RNG stream (exact resume), and
        # successive grids show the same latents as training goes on.
        samples = self.generate(len(self.fixed_latents), self.fixed_latents, self.fixed_labels)
        columns = self.dataset.num_classes if self.fixed_labels is not None else None
        render_samples(
            samples,
            path,
            info=self.dataset.info,
            dataset=self.plan.dataset.component,
            columns=columns,
            real=self._real_samples(len(samples)),
        )
        return path


def _owner(chosen: Chosen) -> str:
    """How train-time contract errors name a component: ``plugin 'p': loss 'name'``."""
    return f"plugin '{chosen.component.plugin}': {chosen.component.label}"


def _load_optimizer(opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load optimizer state, keeping the learning rate's type (float, or a device tensor).

    Each parameter's state tensors (Adam's moments) must have the parameter's shape:
    torch does not check, and a step would fail deep inside the update."""
    kinds = [group["lr"] for group in opt.param_groups]
    opt.load_state_dict(state)
    for index, parameter in enumerate(p for group in opt.param_groups for p in group["params"]):
        for name, value in opt.state.get(parameter, {}).items():
            if isinstance(value, Tensor) and value.dim() and value.shape != parameter.shape:
                raise ValueError(
                    f"the state {name!r} of parameter {index} has shape {list(value.shape)}, "
                    f"the parameter {list(parameter.shape)}"
                )
    for group, before in zip(opt.param_groups, kinds, strict=True):
        if isinstance(before, Tensor):
            group["lr"] = torch.as_tensor(group["lr"], dtype=before.dtype, device=before.device)
        else:
            group["lr"] = float(group["lr"])


def _as_python_state(value: Any) -> tuple[Any, ...]:
    version, internal, gauss = value
    return version, tuple(internal), gauss


def load_run(source: Path, plugins: Plugins, device: str = "auto") -> Run:
    """Deprecated: a whole run (dataset, networks, optimizers, engine) rebuilt from a run
    directory (its newest loadable checkpoint) or a checkpoint file. To sample, evaluate
    or export, :func:`ganforge_core.load_trained` builds only the generator."""
    warnings.warn(
        "ganforge_core.run.load_run is deprecated: use ganforge_core.load_trained(source, device=...) "
        "to sample, evaluate or export (it builds no optimizer and loads no dataset)",
        DeprecationWarning,
        stacklevel=2,
    )
    path, state, config = read_checkpoint(source, device)
    run = Run(resolve(config, plugins.registry), plugins, path.parent)
    run.load_state_dict(state, path)
    return run
