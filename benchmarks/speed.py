#!/usr/bin/env python
"""Training speed and peak memory of one GAN step, implemented three ways.

In one process, for each case (model, loss, batch size, device), this times

* ``classic``: the loop a user would write from the classic PyTorch DCGAN example
  (eager fp32, ``.item()`` every step, a host batch copied to the device every
  step, D's gradients computed during the G step, one fake batch reused for the
  D and G steps, plain Adam, ``cudnn.benchmark = True`` as in the example);
* ``tuned``: the best plain-PyTorch eager loop written by hand (device-resident
  data, bf16 autocast, channels_last and fused Adam on CUDA, D frozen in the G
  phase, ``set_to_none`` gradients, fakes for D under ``no_grad``, no host sync
  in the loop);
* ``ganforge``: ganforge's own engine, built through ``resolve`` and ``Run`` and
  stepped the way ``ganforge run`` steps it.

The three use the same networks (built by the same ganforge factories, with the
same initial weights), the same loss, optimizer settings, batch size and data.
Throughput is real images consumed by D per second (batch size x D steps per G
step / time per G step); peak memory is ``torch.cuda.max_memory_allocated`` for
one implementation alone (CUDA only; null on the CPU).

Usage::

    python benchmarks/speed.py                       # every case, on CUDA when there is one
    python benchmarks/speed.py --device cpu --quick  # a few seconds on a CPU (CI)
    python benchmarks/speed.py --cases dcgan64-bce --json results.json

See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import shlex
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ganforge_core import engine as ganforge_engine
from ganforge_core import BuildContext, Dataset, Options, RunConfig, hookimpl, resolve
from ganforge_core.config import Plan
from ganforge_core.plugins import Plugins

try:
    from ganforge_core.run import Run  # where newer ganforge keeps it
except ImportError:
    from ganforge_core.session import Run

IMPLS = ("classic", "tuned", "tuned-graph", "ganforge")
# cudnn.benchmark as torch starts; ganforge never changes it, so its runs use this.
TORCH_DEFAULT_CUDNN_BENCHMARK = bool(torch.backends.cudnn.benchmark)


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    summary: str
    generator: str  # also the discriminator
    loss: str
    dataset: str  # a ganforge choice, "name:key=value,..."
    batch_size: int


def _cases(images: int) -> dict[str, Case]:
    bench = f"bench-images:size=64,channels=3,n={images}"
    cases = [
        Case("dcgan64-bce-b64", "DCGAN 64x64x3, minimax BCE", "dcgan", "bce", bench, 64),
        Case("dcgan64-bce-b256", "DCGAN 64x64x3, minimax BCE", "dcgan", "bce", bench, 256),
        Case("dcgan64-wgangp-b64", "DCGAN 64x64x3, WGAN-GP, 5 critic steps", "dcgan", "wgan-gp", bench, 64),
        Case("dcgan64-wgangp-b256", "DCGAN 64x64x3, WGAN-GP, 5 critic steps", "dcgan", "wgan-gp", bench, 256),
        Case("mnist28-bce-b64", "DCGAN 28x28x1 on mnist-5k, minimax BCE", "dcgan", "bce", "mnist-5k", 64),
        Case("mlp2d-b100", "PacGAN MLP on ring-8, non-saturating", "mlp", "non-saturating", "ring-8", 100),
    ]
    return {c.name: c for c in cases}


CASE_NAMES = tuple(_cases(4096))
QUICK_CASES = ("mlp2d-b100", "mnist28-bce-b64")


def select_cases(spec: str, known: tuple[str, ...]) -> list[str]:
    """Comma-separated names; ``all``; a prefix such as ``dcgan64-bce`` selects every case it starts."""
    chosen: list[str] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        if item == "all":
            matches = list(known)
        elif item in known:
            matches = [item]
        else:
            matches = [name for name in known if name.startswith(item)]
        if not matches:
            raise SystemExit(f"speed.py: unknown case '{item}'; valid: {', '.join(known)} (or a prefix, or all)")
        chosen += [m for m in matches if m not in chosen]
    if not chosen:
        raise SystemExit("speed.py: --cases selects nothing")
    return chosen


# --------------------------------------------------------------------------
# A synthetic 64x64 image dataset, registered through an in-process plugin
# --------------------------------------------------------------------------


class BenchImagesOptions(Options):
    size: int = Field(64, ge=8, description="side of the square images")
    channels: int = Field(3, ge=1, description="channels per image")
    n: int = Field(4096, ge=1, description="images in the dataset")
    seed: int = Field(0, ge=0, description="seed of the pixels")


def build_bench_images(options: BenchImagesOptions, ctx: BuildContext) -> Dataset:
    generator = torch.Generator().manual_seed(options.seed)
    shape = (options.n, options.channels, options.size, options.size)
    return Dataset(samples=torch.rand(shape, generator=generator).mul_(2).sub_(1))


class BenchPlugin:
    """Registers ``bench-images``: uniform random images in [-1, 1] (speed only, nothing to learn)."""

    @hookimpl
    def ganforge_register_datasets(self, register: Any) -> None:
        register(
            "bench-images",
            build_bench_images,
            options=BenchImagesOptions,
            summary="uniform random images in [-1, 1], for benchmarks",
            traits={"image"},
            paper="none: synthetic data for speed measurements",
        )


# --------------------------------------------------------------------------
# What the three implementations share
# --------------------------------------------------------------------------


@dataclass
class Setup:
    """One case resolved by ganforge: networks, loss, optimizer settings and data."""

    plan: Plan
    ctx: BuildContext
    device: torch.device
    host_samples: Tensor  # the dataset on the CPU, as ganforge loaded it
    init_g: dict[str, Tensor]
    init_d: dict[str, Tensor]

    @property
    def config(self) -> RunConfig:
        return self.plan.config

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    @property
    def d_steps(self) -> int:
        return self.plan.d_steps

    @property
    def loss(self) -> str:
        return self.plan.loss.component.name

    @property
    def gp_weight(self) -> float:
        return float(getattr(self.plan.loss.options, "weight", 10.0))

    def new_generator(self) -> nn.Module:
        net = self.plan.generator.component.build(self.plan.generator.options, self.ctx)
        net.load_state_dict(self.init_g)
        return net.to(self.device)

    def new_discriminator(self) -> nn.Module:
        net = self.plan.discriminator.component.build(self.plan.discriminator.options, self.ctx)
        net.load_state_dict(self.init_d)
        return net.to(self.device)


def check_supported(plan: Plan) -> None:
    loss = plan.loss.component.name
    if loss not in {"bce", "non-saturating", "wgan-gp"}:
        raise ValueError(f"the hand-written loops implement bce, non-saturating and wgan-gp, not {loss}")
    if loss == "wgan-gp" and getattr(plan.loss.options, "penalty", "two-sided") != "two-sided":
        raise ValueError("the hand-written loops implement the two-sided gradient penalty only")
    if plan.regularizers:
        raise ValueError("the hand-written loops implement no regularizers")
    if getattr(plan.config, "conditional", False):
        raise ValueError("the hand-written loops are unconditional")
    if plan.scheduler.component.name != "constant":
        raise ValueError("the hand-written loops implement the constant schedule only")


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------
# 1. classic: the PyTorch DCGAN example's loop (and the usual WGAN-GP loop)
# --------------------------------------------------------------------------


class Classic:
    """Written the way pytorch/examples' dcgan/main.py writes it; WGAN-GP as Gulrajani et al.'s code."""

    name = "classic"
    cudnn_benchmark = True  # the DCGAN example sets cudnn.benchmark = True

    def __init__(self, s: Setup) -> None:
        self.device = s.device
        self.batch_size, self.d_steps, self.loss = s.batch_size, s.d_steps, s.loss
        self.gp_weight = s.gp_weight
        self.netG = s.new_generator()
        self.netD = s.new_discriminator()
        self.nz = int(self.netG.z_dim)
        config = s.config
        self.optimizerD = torch.optim.Adam(self.netD.parameters(), lr=config.lr_d, betas=config.betas)
        self.optimizerG = torch.optim.Adam(self.netG.parameters(), lr=config.lr_g, betas=config.betas)
        self.criterion = nn.BCEWithLogitsLoss()
        self.real_label, self.fake_label = 1.0, 0.0
        # The dataset stays on the host, as behind a DataLoader(shuffle=True, drop_last=True).
        self.host = s.host_samples
        self.order = torch.randperm(self.host.shape[0])
        self.position = 0
        self.last: dict[str, float] = {}

    def next_real(self) -> Tensor:
        b = self.batch_size
        if self.position + b > self.order.numel():
            self.order = torch.randperm(self.host.shape[0])
            self.position = 0
        batch = self.host[self.order[self.position : self.position + b]]  # pageable host memory
        self.position += b
        return batch.to(self.device)

    def step(self) -> None:
        if self.loss == "wgan-gp":
            self._wgan_gp_step()
        else:
            self._bce_step()

    def _bce_step(self) -> None:
        device = self.device
        # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
        real = self.next_real()
        b_size = real.size(0)
        self.netD.zero_grad()
        label = torch.full((b_size,), self.real_label, dtype=torch.float, device=device)
        output = self.netD(real).view(-1)
        errD_real = self.criterion(output, label)
        errD_real.backward()
        noise = torch.randn(b_size, self.nz, device=device)
        fake = self.netG(noise)
        label.fill_(self.fake_label)
        output = self.netD(fake.detach()).view(-1)
        errD_fake = self.criterion(output, label)
        errD_fake.backward()
        errD = errD_real + errD_fake
        self.optimizerD.step()
        # (2) Update G (D's gradients are computed too, and cleared at the next D step)
        self.netG.zero_grad()
        output = self.netD(fake).view(-1)
        if self.loss == "bce":  # minimax: G minimises log(1 - D(G(z))) = -BCE(D(G(z)), fake)
            errG = -self.criterion(output, label)
        else:  # non-saturating, as the example: G maximises log(D(G(z)))
            label.fill_(self.real_label)
            errG = self.criterion(output, label)
        errG.backward()
        self.optimizerG.step()
        self.last = {"loss/d": errD.item(), "loss/g": errG.item()}

    def _gradient_penalty(self, real: Tensor, fake: Tensor) -> Tensor:
        alpha = torch.rand((real.size(0),) + (1,) * (real.dim() - 1), device=self.device)
        interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        disc_interpolates = self.netD(interpolates)
        gradients = torch.autograd.grad(
            outputs=disc_interpolates,
            inputs=interpolates,
            grad_outputs=torch.ones_like(disc_interpolates),
            create_graph=True,
            retain_graph=True,
            only_inputs=True,
        )[0]
        gradients = gradients.reshape(gradients.size(0), -1)
        return ((gradients.norm(2, dim=1) - 1) ** 2).mean() * self.gp_weight

    def _wgan_gp_step(self) -> None:
        for _ in range(self.d_steps):
            real = self.next_real()
            self.netD.zero_grad()
            noise = torch.randn(real.size(0), self.nz, device=self.device)
            fake = self.netG(noise)
            d_real = self.netD(real).mean()
            d_fake = self.netD(fake.detach()).mean()
            gradient_penalty = self._gradient_penalty(real, fake.detach())
            errD = d_fake - d_real + gradient_penalty
            errD.backward()
            self.optimizerD.step()
        self.netG.zero_grad()
        errG = -self.netD(fake).mean()  # the last critic iteration's fake batch
        errG.backward()
        self.optimizerG.step()
        self.last = {"loss/d": errD.item(), "loss/g": errG.item()}

    def finish(self) -> dict[str, float]:
        return dict(self.last)


# --------------------------------------------------------------------------
# 2. tuned: the best plain eager PyTorch loop by hand
# --------------------------------------------------------------------------


class Tuned:
    name = "tuned"
    cudnn_benchmark = True

    def __init__(self, s: Setup) -> None:
        self.device = device = s.device
        cuda = device.type == "cuda"
        self.batch_size, self.d_steps, self.loss = s.batch_size, s.d_steps, s.loss
        self.gp_weight = s.gp_weight
        self.amp_dtype = torch.bfloat16 if cuda else None
        self.channels_last = cuda and s.host_samples.dim() == 4
        G, D = s.new_generator(), s.new_discriminator()
        data = s.host_samples.to(device)
        if self.channels_last:
            G = G.to(memory_format=torch.channels_last)
            D = D.to(memory_format=torch.channels_last)
            data = data.contiguous(memory_format=torch.channels_last)
        self.G, self.D, self.data = G, D, data
        self.z_dim = int(G.z_dim)
        config = s.config
        fused = {"fused": True} if device.type in ("cuda", "cpu") else {}  # torch >= 2.4 fuses Adam on the CPU too
        self.opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=config.betas, **fused)
        self.opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=config.betas, **fused)
        self.perm = torch.randperm(data.shape[0], device=device)
        self.position = 0
        self.ones = torch.ones(self.batch_size, device=device)
        self.zeros = torch.zeros(self.batch_size, device=device)
        self.sum_d = torch.zeros((), device=device)
        self.sum_g = torch.zeros((), device=device)
        self.counted = 0

    autocast_cache = True

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, cache_enabled=self.autocast_cache)

    def next_real(self) -> Tensor:
        b = self.batch_size
        if self.position + b > self.perm.numel():
            self.perm = torch.randperm(self.data.shape[0], device=self.device)
            self.position = 0
        index = self.perm[self.position : self.position + b]
        self.position += b
        return self.data[index]  # device gather; keeps channels_last

    def latents(self) -> Tensor:
        return torch.randn(self.batch_size, self.z_dim, device=self.device)

    def gradient_penalty(self, real: Tensor, fake: Tensor) -> Tensor:
        mix = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=self.device)
        between = torch.lerp(fake.float(), real, mix).requires_grad_(True)  # fake + mix (real - fake)
        with self.autocast():
            scores = self.D(between)
        (grad,) = torch.autograd.grad(scores.sum(), between, create_graph=True)
        return (grad.flatten(1).norm(dim=1) - 1).square().mean()

    def step(self) -> None:
        self.body([self.next_real() for _ in range(self.d_steps)])
        self.counted += 1

    def body(self, reals: list[Tensor]) -> None:
        G, D = self.G, self.D
        loss_d = self.sum_d  # replaced below (d_steps >= 1)
        for real in reals:
            with torch.no_grad(), self.autocast():
                fake = G(self.latents())
            with self.autocast():
                real_logits = D(real)
                fake_logits = D(fake)
                if self.loss == "wgan-gp":
                    loss_d = fake_logits.float().mean() - real_logits.float().mean()
                else:
                    loss_d = F.binary_cross_entropy_with_logits(
                        real_logits, self.ones
                    ) + F.binary_cross_entropy_with_logits(fake_logits, self.zeros)
            if self.loss == "wgan-gp":
                loss_d = loss_d + self.gp_weight * self.gradient_penalty(real, fake)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
        D.requires_grad_(False)
        try:
            with self.autocast():
                fake_logits = D(G(self.latents()))
                if self.loss == "wgan-gp":
                    loss_g = -fake_logits.float().mean()
                elif self.loss == "bce":
                    loss_g = -F.binary_cross_entropy_with_logits(fake_logits, self.zeros)
                else:
                    loss_g = F.binary_cross_entropy_with_logits(fake_logits, self.ones)
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
        finally:
            D.requires_grad_(True)
        self.sum_d += loss_d.detach()
        self.sum_g += loss_g.detach()

    def finish(self) -> dict[str, float]:
        """Mean losses since the last call: the only host sync."""
        d, g = (torch.stack([self.sum_d, self.sum_g]) / max(self.counted, 1)).tolist()
        self.sum_d.zero_()
        self.sum_g.zero_()
        self.counted = 0
        return {"loss/d": d, "loss/g": g}


class TunedGraph(Tuned):
    """The tuned loop with its whole step captured in a CUDA graph by hand (CUDA only).

    Capturable fused Adam with device learning rates, three eager warm-up steps
    on one side stream, then ``torch.cuda.graph`` around the step body; each
    step copies its real batches into the graph's static inputs and replays.
    """

    name = "tuned-graph"
    autocast_cache = False  # autocast's weight cache must not outlive a capture

    def __init__(self, s: Setup) -> None:
        super().__init__(s)
        config = s.config
        capturable = {"fused": True, "capturable": True}
        self.opt_g = torch.optim.Adam(
            self.G.parameters(), lr=torch.tensor(config.lr_g, device=self.device), betas=config.betas, **capturable
        )
        self.opt_d = torch.optim.Adam(
            self.D.parameters(), lr=torch.tensor(config.lr_d, device=self.device), betas=config.betas, **capturable
        )
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: list[Tensor] = []
        self.side = torch.cuda.Stream()
        self.eager = 0

    def step(self) -> None:
        reals = [self.next_real() for _ in range(self.d_steps)]
        self.counted += 1
        if self.graph is not None:
            for static, real in zip(self.static, reals, strict=True):
                static.copy_(real)
            self.graph.replay()
        elif self.eager < 3:
            self.eager += 1
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                self.body(reals)
            torch.cuda.current_stream().wait_stream(self.side)
        else:
            self.static = [real.clone() for real in reals]
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.body(self.static)
            self.graph.replay()


# --------------------------------------------------------------------------
# 3. ganforge: its engine, stepped as `ganforge run` steps it
# --------------------------------------------------------------------------


class Ganforge:
    name = "ganforge"

    def __init__(self, run: Run, cudnn_benchmark: bool) -> None:
        self.run = run
        # Whatever building the Run left in effect (ganforge turns it on for CUDA).
        self.cudnn_benchmark = cudnn_benchmark

    def step(self) -> None:
        # The body of ganforge_core.session._loop between two log lines.
        self.run.engine.step(self.run.step)
        self.run.step += 1

    def finish(self) -> dict[str, float]:
        stats = self.run.engine.read_stats()  # the engine keeps running sums on the device
        return {k: v for k, v in stats.items() if k in ("loss/d", "loss/g")}


# --------------------------------------------------------------------------
# The harness
# --------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("speed.py: --device cuda, but CUDA is not available here")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def prime_cuda(device: torch.device) -> None:
    """Create the CUDA context and the cuBLAS/cuDNN handles before any measurement,
    so that their one-time allocations are charged to no implementation."""
    if device.type != "cuda":
        return
    x = torch.randn(64, 3, 16, 16, device=device, requires_grad=True)
    conv = nn.Conv2d(3, 8, 3).to(device)
    lin = nn.Linear(8, 8).to(device)
    lin(conv(x).mean((2, 3))).sum().backward()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        lin(conv(x).mean((2, 3))).float().sum().backward()
    del x, conv, lin
    sync(device)
    gc.collect()
    torch.cuda.empty_cache()


Impl = Classic | Tuned | TunedGraph | Ganforge


def interleaved_steps(
    impls: dict[str, Impl], names: list[str], steps: int, repeat: int, losses: dict[str, dict[str, float]]
) -> dict[str, float]:
    """One repeat interleaved by steps (CPU): ``steps`` rounds of one timed step of each
    implementation, in an order rotated each round, so that a slow second of the machine
    falls on all of them alike; each implementation's ``finish`` is timed with its last step.
    Returns each one's seconds."""
    elapsed = dict.fromkeys(names, 0.0)
    for round_ in range(steps):
        shift = (repeat * steps + round_) % len(names)
        for name in names[shift:] + names[:shift]:
            impl = impls[name]
            start = time.perf_counter()
            impl.step()
            if round_ == steps - 1:
                losses[name] = impl.finish()
            elapsed[name] += time.perf_counter() - start
    return elapsed


def run_case(
    case: Case, args: argparse.Namespace, device: torch.device, plugins: Plugins
) -> dict[str, Any]:
    cuda = device.type == "cuda"
    impl_names = [name for name in IMPLS if cuda or name != "tuned-graph"]  # graphs need CUDA
    total_steps = args.warmup + 1 + args.repeats * args.steps  # ganforge's steps, for its schedule
    with tempfile.TemporaryDirectory(prefix="ganforge-bench-") as tmp:
        config = RunConfig(
            generator=case.generator,
            discriminator=case.generator,
            loss=case.loss,
            dataset=case.dataset,
            batch_size=case.batch_size,
            steps=total_steps,
            device=str(device),
            out=Path(tmp),
        )
        plan = resolve(config, plugins.registry)
        check_supported(plan)

        impls: dict[str, Impl] = {}
        peaks: dict[str, float | None] = {}
        setup: Setup | None = None
        # Built one at a time, each warmed up (and its memory read) before the next
        # exists: the ones already built sit idle, so max_memory_allocated minus what
        # was allocated before an implementation was built is that implementation's
        # own peak, as if it ran alone. ganforge first: its Run loads the data and
        # draws the initial weights the other two copy.
        for name in ("ganforge", *(n for n in impl_names if n != "ganforge")):
            sync(device)
            gc.collect()
            before = torch.cuda.memory_allocated(device) if cuda else 0
            if name == "ganforge":
                torch.backends.cudnn.benchmark = TORCH_DEFAULT_CUDNN_BENCHMARK
                run = Run(plan, plugins, Path(tmp))
                impl: Impl = Ganforge(run, cudnn_benchmark=torch.backends.cudnn.benchmark)
                fast = getattr(run, "fast", None)  # ganforge's speed features, where it has them
                fast_path = fast.describe() if hasattr(fast, "describe") else None
                if fast_path:
                    log(f"  ganforge {fast_path}")
                setup = Setup(
                    plan=plan,
                    ctx=run.ctx,
                    device=device,
                    host_samples=run.dataset.take(range(len(run.dataset))),  # float32 in the model's scale
                    init_g=_cpu_state(run.generator),
                    init_d=_cpu_state(run.discriminator),
                )
            else:
                assert setup is not None
                impl = {"classic": Classic, "tuned": Tuned, "tuned-graph": TunedGraph}[name](setup)
            impls[name] = impl
            with cudnn_benchmark(impl.cudnn_benchmark):
                # Warm-up, then one more untimed step. The peak is read over all of
                # them but the first, whose cuDNN algorithm search (cudnn.benchmark)
                # allocates workspaces no later step needs; a CUDA graph captured
                # during warm-up is counted.
                for i in range(args.warmup + 1):
                    impl.step()
                    if i == 0 and args.warmup > 0:
                        impl.finish()
                        sync(device)
                        if cuda:
                            torch.cuda.reset_peak_memory_stats(device)
                impl.finish()
                sync(device)
                peaks[name] = (torch.cuda.max_memory_allocated(device) - before) / 2**20 if cuda else None
        assert setup is not None

        rates: dict[str, list[float]] = {name: [] for name in impl_names}
        losses: dict[str, dict[str, float]] = {}
        images_per_step = case.batch_size * setup.d_steps
        for repeat in range(args.repeats):
            if args.interleave == "step":
                elapsed_of = interleaved_steps(impls, impl_names, args.steps, repeat, losses)
            for name in impl_names:  # interleaved by blocks: classic, tuned, ..., ganforge, classic, ...
                impl = impls[name]
                if args.interleave == "step":
                    elapsed = elapsed_of[name]
                else:
                    with cudnn_benchmark(impl.cudnn_benchmark):
                        sync(device)
                        start = time.perf_counter()
                        for _ in range(args.steps):
                            impl.step()
                        losses[name] = impl.finish()
                        sync(device)
                        elapsed = time.perf_counter() - start
                rates[name].append(args.steps * images_per_step / elapsed)
                log(f"  {case.name} repeat {repeat + 1}/{args.repeats} {name}: {rates[name][-1]:,.0f} img/s")

        data_mib = setup.host_samples.numel() * setup.host_samples.element_size() / 2**20
        results: dict[str, Any] = {}
        for name in impl_names:
            results[name] = {
                "img_per_s": statistics.median(rates[name]),
                "img_per_s_repeats": rates[name],
                "ms_per_step": 1000 * images_per_step / statistics.median(rates[name]),
                "peak_mib": peaks[name],
                "cudnn_benchmark": impls[name].cudnn_benchmark if cuda else None,
                "last_losses": losses.get(name, {}),
            }
        ganforge = results["ganforge"]["img_per_s"]
        record = {
            "case": case.name,
            "summary": case.summary,
            "generator": plan.config.generator.model_dump(mode="json"),
            "discriminator": plan.config.discriminator.model_dump(mode="json")
            if plan.config.discriminator
            else None,
            "loss": plan.config.loss.model_dump(mode="json"),
            "dataset": plan.config.dataset.model_dump(mode="json"),
            "data_shape": list(setup.ctx.data_shape),
            "dataset_mib": data_mib,
            "batch_size": case.batch_size,
            "d_steps": setup.d_steps,
            "images_per_step": images_per_step,
            "lr_g": plan.config.lr_g,
            "lr_d": plan.config.lr_d,
            "betas": list(plan.config.betas or ()),
            "ganforge_fast_path": fast_path,
            "results": results,
            "ratios": {
                f"ganforge/{name}": ganforge / results[name]["img_per_s"] for name in impl_names if name != "ganforge"
            },
            # The median over repeats of each repeat's own ratio (its blocks, or its steps, side by side).
            "paired_ratios": {
                f"ganforge/{name}": statistics.median(
                    mine / theirs for mine, theirs in zip(rates["ganforge"], rates[name], strict=True)
                )
                for name in impl_names
                if name != "ganforge"
            },
        }
        del impls, impl, run, setup
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return record


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def table_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for record in records:
        for name, result in record["results"].items():
            peak = result["peak_mib"]
            ratios = record["ratios"]
            compared = [f"{ratios[key]:.2f}x" if name == "ganforge" and key in ratios else "" for key in RATIOS]
            rows.append(
                [
                    record["case"],
                    name,
                    f"{result['img_per_s']:,.0f}",
                    "-" if peak is None else f"{peak:,.0f}",
                    *compared,
                ]
            )
    return rows


RATIOS = ("ganforge/classic", "ganforge/tuned", "ganforge/tuned-graph")
HEADERS = ["case", "impl", "img/s", "peak MiB", *RATIOS]


def print_table(records: list[dict[str, Any]], title: str) -> None:
    rows = table_rows(records)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)))
        for row in rows:
            print("  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        return
    table = Table(title=title)
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="right" if i >= 2 else "left")
    previous = None
    for row in rows:
        if previous is not None and row[0] != previous:
            table.add_section()
        previous = row[0]
        table.add_row(*row)
    Console(width=max(140, Console().width)).print(table)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="speed.py",
        description="img/s and peak memory of one GAN training step: classic PyTorch loop, "
        "tuned PyTorch loop and ganforge's engine, in one process.",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    parser.add_argument(
        "--cases",
        default=None,
        help=f"comma-separated cases or prefixes, or 'all' (default: all; with --quick: "
        f"{','.join(QUICK_CASES)}). Cases: {', '.join(CASE_NAMES)}",
    )
    parser.add_argument("--steps", type=positive, default=None, help="timed G steps per repeat (CUDA 200, CPU 10, quick 3)")
    parser.add_argument("--warmup", type=non_negative, default=None, help="untimed G steps first (10; quick 2)")
    parser.add_argument("--repeats", type=positive, default=None, help="timed blocks per implementation; the median is reported (3; quick 1)")
    parser.add_argument(
        "--interleave",
        choices=["auto", "block", "step"],
        default="auto",
        help="time each implementation's repeat as one block of --steps steps, the blocks side by side (block), "
        "or one step of each in turn, in a rotating order (step: finer pairing, for the CPU, where a step "
        "waits for nothing); auto: step on the CPU, block on CUDA",
    )
    parser.add_argument("--images", type=positive, default=4096, help="images in the synthetic 64x64 dataset (4096)")
    parser.add_argument("--threads", type=positive, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny CPU-friendly settings for CI")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write every result here")
    args = parser.parse_args(argv)
    args.device = pick_device(args.device)
    cuda = args.device.type == "cuda"
    if args.steps is None:
        args.steps = 3 if args.quick else (200 if cuda else 10)
    if args.warmup is None:
        args.warmup = 2 if args.quick else 10
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.cases is None:
        args.cases = ",".join(QUICK_CASES) if args.quick else "all"
    if args.interleave == "auto":
        args.interleave = "block" if cuda else "step"
    elif args.interleave == "step" and cuda:
        parser.error("--interleave step is for the CPU: on CUDA a timed step would wait for the GPU every step")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device: torch.device = args.device
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cases = _cases(args.images)
    names = select_cases(args.cases, tuple(cases))
    plugins = Plugins(extra=[("bench", BenchPlugin())])
    problems = [str(p) for p in plugins.registry.problems]
    for problem in problems:
        log(f"warning: {problem}")
    log(
        f"device {device} ({device_name(device)}), torch {torch.__version__}; "
        f"{args.steps} steps x {args.repeats} repeats after {args.warmup} warm-up steps, interleaved by {args.interleave}"
    )
    graph_warmup = getattr(ganforge_engine, "GRAPH_WARMUP", None)
    if device.type == "cuda" and isinstance(graph_warmup, int) and args.warmup <= graph_warmup:
        log(
            f"warning: --warmup {args.warmup} is too short for ganforge's engine, which captures its "
            f"CUDA graph after {graph_warmup} eager steps: the capture will be timed"
        )
    prime_cuda(device)
    records: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for name in names:
        log(f"case {name}")
        try:
            records.append(run_case(cases[name], args, device, plugins))
        except Exception as exc:  # noqa: BLE001 - report and go on with the other cases
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"case {name} failed: {errors[name]}")
            log(traceback.format_exc())
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    title = (
        f"{device_name(device)}, torch {torch.__version__}: median of {args.repeats} x {args.steps} steps, "
        f"interleaved by {args.interleave}"
    )
    if records:
        print_table(records, title)
        for record in records:
            paired = ", ".join(f"{key} {value:.3f}x" for key, value in record["paired_ratios"].items())
            print(f"{record['case']}: median of the repeats' own ratios: {paired}")
        if device.type == "cuda":
            held = ", ".join(f"{r['case']} {r['dataset_mib']:,.0f}" for r in records)
            print(
                "peak MiB: max_memory_allocated of each implementation alone; tuned's and ganforge's "
                f"include the dataset they keep on the device (MiB: {held}); classic keeps it on the host."
            )
    for name, error in errors.items():
        print(f"{name}: FAILED: {error}")
    if args.json is not None:
        report = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(["speed.py", *argv]),
            "argv": sys.argv if argv is None else ["speed.py", *argv],
            "device": str(device),
            "device_name": device_name(device),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            "python": platform.python_version(),
            "settings": {
                "steps": args.steps,
                "warmup": args.warmup,
                "repeats": args.repeats,
                "interleave": args.interleave,
                "images": args.images,
                "threads": torch.get_num_threads(),
                "quick": args.quick,
            },
            "cases": records,
            "results": [
                {"case": r["case"], "impl": name, **result} for r in records for name, result in r["results"].items()
            ],
            "errors": errors,
            "plugin_problems": problems,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
        log(f"wrote {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
