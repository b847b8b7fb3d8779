"""Checks of generators and discriminators: shapes, finiteness, labels, the BatchNorm declaration."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ganforge_core.testing.objects import BATCHNORM_TRAIT, _check, _fail, _finite, _seeded


def check_generator(
    generator: nn.Module,
    data_shape: tuple[int, ...],
    n: int = 5,
    *,
    training: bool = True,
    seed: int = 0,
    traits: Iterable[str] = (),
) -> None:
    """G maps ``n`` latents ``[n, z_dim]`` to ``n`` finite samples of ``data_shape``."""
    _check(isinstance(generator, nn.Module), f"a generator is a torch.nn.Module, got {type(generator).__name__}")
    z_dim: Any = getattr(generator, "z_dim", None)  # checked just below
    _check(
        isinstance(z_dim, int) and not isinstance(z_dim, bool) and z_dim >= 1,
        f"a generator has an integer attribute z_dim >= 1, got {z_dim!r}",
    )
    if n == 1 and training and BATCHNORM_TRAIT["generator"] in set(traits):
        return  # declared: ganforge never trains this generator on a batch of one
    generator.train(training)
    with torch.no_grad():
        out = generator(torch.randn(n, z_dim, generator=_seeded(seed)))
    mode = "training" if training else "eval"
    _check(
        isinstance(out, Tensor) and list(out.shape) == [n, *data_shape],
        lambda: (
            f"generator ({mode} mode) gave shape {list(getattr(out, 'shape', []))} for {n} latents; "
            f"expected {[n, *data_shape]}"
        ),
    )
    _check(out.is_floating_point() and _finite(out), f"generator ({mode} mode) gave non-finite or non-float samples")


def check_discriminator(discriminator: nn.Module, batch: Tensor, *, traits: Iterable[str] = ()) -> None:
    """D maps a batch ``[N, ...]`` to ``N`` finite logits, and gradients reach its parameters."""
    _check(
        isinstance(discriminator, nn.Module),
        f"a discriminator is a torch.nn.Module, got {type(discriminator).__name__}",
    )
    n = len(batch)
    if n == 1 and BATCHNORM_TRAIT["discriminator"] in set(traits):
        return  # declared: ganforge never trains this discriminator on a batch of one
    logits = discriminator(batch)
    _check(
        isinstance(logits, Tensor) and list(logits.shape) == [n],
        lambda: (
            f"discriminator gave shape {list(getattr(logits, 'shape', []))} for a batch of {n}; "
            f"expected [{n}] (one logit per sample)"
        ),
    )
    _check(_finite(logits), "discriminator gave non-finite logits")
    logits.sum().backward()
    _check(
        any(p.grad is not None for p in discriminator.parameters()),
        "no gradient reached the discriminator's parameters",
    )


def check_conditional_generator(
    generator: nn.Module, data_shape: tuple[int, ...], num_classes: int, n: int = 5, seed: int = 0
) -> None:
    """A generator built with ``conditional=True`` is called as ``G(z, labels)`` and the labels matter."""
    source = _seeded(seed)
    generator.eval()
    # getattr: nn.Module types its attributes as Tensor | Module; a generator's z_dim is an int
    z = torch.randn(n, int(getattr(generator, "z_dim")), generator=source)
    labels = torch.randint(num_classes, (n,), generator=source)
    with torch.no_grad():
        out = generator(z, labels)
        other = generator(z, (labels + 1) % num_classes)
    _check(list(out.shape) == [n, *data_shape], f"conditional generator gave shape {list(out.shape)}")
    _check(not torch.equal(out, other), "conditional generator: changing the labels changed no sample")


def check_conditional_discriminator(discriminator: nn.Module, batch: Tensor, num_classes: int, seed: int = 0) -> None:
    """A discriminator built with ``conditional=True`` is called as ``D(x, labels=labels)`` and the labels matter."""
    n = len(batch)
    labels = torch.randint(num_classes, (n,), generator=_seeded(seed))
    logits = discriminator(batch, labels=labels)
    _check(list(logits.shape) == [n] and _finite(logits), f"conditional discriminator gave {list(logits.shape)}")
    other = discriminator(batch, labels=(labels + 1) % num_classes)
    _check(not torch.equal(logits, other), "conditional discriminator: changing the labels changed no logit")


def check_declares_batchnorm(network: nn.Module, kind: str, traits: Iterable[str]) -> None:
    """A generator (discriminator) has the trait batchnorm-in-g (-d) exactly when it holds a BatchNorm layer."""
    trait = BATCHNORM_TRAIT[kind]
    batch_norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    declared = trait in set(traits)
    if batch_norms and not declared:
        raise _fail(f"{kind} holds {type(batch_norms[0]).__name__} but does not declare the trait '{trait}'")
    _check(not declared or batch_norms, f"{kind} declares '{trait}' but holds no BatchNorm layer")


def check_per_sample(discriminator: nn.Module, batch: Tensor, labels: Tensor | None = None) -> None:
    """A discriminator of the trait ``per-sample``: one training-mode call on ``batch`` (with ``labels``,
    for a conditional one) gives the logits of two calls on its halves (to float rounding), and leaves
    every parameter and buffer as it was."""
    _check(len(batch) >= 2, "check_per_sample needs a batch of at least 2 samples")
    discriminator.train()
    before = {name: value.detach().clone() for name, value in discriminator.state_dict().items()}
    half = len(batch) // 2

    def score(rows: slice) -> Tensor:
        logits: Tensor = discriminator(batch[rows]) if labels is None else discriminator(batch[rows], labels=labels[rows])
        return logits

    with torch.no_grad():
        whole = score(slice(None))
        changed = [name for name, value in discriminator.state_dict().items() if not torch.equal(value, before[name])]
        _check(
            not changed,
            lambda: f"declares the trait 'per-sample' but a forward pass changed its state ({changed[0]}); "
            "BatchNorm and spectral norm change buffers at every call",
        )
        halves = torch.cat([score(slice(None, half)), score(slice(half, None))])
    gap = float((whole - halves).abs().max())
    _check(
        torch.allclose(whole, halves, rtol=1e-4, atol=1e-5),
        lambda: f"declares the trait 'per-sample' but scoring {len(batch)} samples in one call differs from "
        f"scoring its halves apart (by {gap:.3g}): its samples are not scored on their own (minibatch "
        "statistics, dropout?)",
    )


def check_growing(
    network: nn.Module, total_steps: int, check: Callable[[], None], forward: Callable[[], Tensor] | None = None
) -> None:
    """A network of the trait ``growing``: ``grow(step, total_steps)`` returns a hashable key that is a
    pure function of the step (the same whatever was grown before), and ``check()`` (the network's own
    check) passes at the first, middle and last step; the network is left at the last step's form.

    With ``forward`` (the network on a small batch), a backward pass of its output reaches every
    parameter at each of those steps, with a gradient of 0 where a stage is not in use: DDP waits for
    every parameter's gradient under torchrun."""
    grow = getattr(network, "grow", None)
    _check(callable(grow), "declares the trait 'growing' but has no grow(step, total_steps) method")
    assert callable(grow)
    steps = sorted({0, total_steps // 2, total_steps - 1})
    keys: dict[int, Hashable] = {}
    for step in steps:
        key = grow(step, total_steps)
        _check(isinstance(key, Hashable), f"grow({step}, {total_steps}) returned {key!r}, which is not hashable")
        keys[step] = key
        check()
        if forward is not None:
            _reaches_every_parameter(network, forward, f"at step {step} of {total_steps}")
    for step in reversed(steps):
        again = grow(step, total_steps)
        _check(
            again == keys[step],
            f"grow({step}, {total_steps}) returned {keys[step]!r}, then {again!r} after other steps: "
            "the form must be a function of the step alone",
        )
    grow(steps[-1], total_steps)


def _reaches_every_parameter(network: nn.Module, forward: Callable[[], Tensor], when: str) -> None:
    network.zero_grad(set_to_none=True)
    forward().float().sum().backward()
    missing = [name for name, p in network.named_parameters() if p.requires_grad and p.grad is None]
    network.zero_grad(set_to_none=True)
    _check(
        not missing,
        lambda: f"{when}, {len(missing)} parameters get no gradient ({', '.join(missing[:3])}"
        f"{', ...' if len(missing) > 3 else ''}): a growing network gives the stages it does not use a gradient "
        "of 0 (e.g. its output + 0 * the sum of its parameters), since DDP waits for every one under torchrun",
    )


def check_truncation(generator: nn.Module, shape: tuple[int, ...]) -> None:
    """A generator of the trait ``truncation``: a float ``truncation_psi`` that its eval-mode forward reads,
    so that psi 0 gives one image for every latent and psi 1 different ones; psi is left as it was."""
    psi = getattr(generator, "truncation_psi", None)
    _check(
        isinstance(psi, float) and not isinstance(psi, bool),
        f"declares the trait 'truncation' but its truncation_psi is {psi!r}, not a float",
    )
    z_dim = int(getattr(generator, "z_dim"))
    was_training = generator.training
    generator.train()
    with torch.no_grad():
        generator(torch.randn(8, z_dim))  # a training pass: whatever average truncation pulls toward moves
        generator.eval()
        z = torch.randn(3, z_dim)
        try:
            outputs = {}
            for value in (0.0, 1.0):
                setattr(generator, "truncation_psi", value)
                outputs[value] = generator(z)
        finally:
            setattr(generator, "truncation_psi", psi)
            generator.train(was_training)
    _check(tuple(outputs[0.0].shape[1:]) == tuple(shape), f"samples of shape {tuple(outputs[0.0].shape[1:])}")
    spread = (outputs[0.0] - outputs[0.0][:1]).abs().max().item()
    _check(spread <= 1e-5, f"truncation_psi 0 in eval mode still gives different samples (max difference {spread:.3g})")
    _check(
        not torch.allclose(outputs[1.0][0], outputs[1.0][1]),
        "truncation_psi 1 in eval mode gives the same sample for different latents",
    )
