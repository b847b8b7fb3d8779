"""inception-fid and inception-kid: pytorch-fid's TF-FID Inception and torchvision's Inception v3 on
weights from a local file, offline.

One randomly initialised state dict of each network is written once for the module (its
BatchNorm statistics set by one training-mode pass over two random images, so that the
features neither vanish nor explode through 90 layers); every test reads those files.
Inception v3 at 299x299 costs ~0.7 s an image on one CPU thread, so the metrics run on
a handful of samples. No test touches the network: the download path reads a file
placed in a temporary torch.hub cache, with every way out to the network replaced by
a failure, and torch.hub's cache is a temporary folder in every test.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from importlib.metadata import version
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_fid import inception as pytorch_fid_inception
from pytorch_fid.fid_score import calculate_frechet_distance, get_activations
from typer.testing import CliRunner

from ganforge_core import ConfigError, Dataset, RunConfig, get_registry, resolve
from ganforge_core.cli import app
from ganforge_core.features import fid
from ganforge_inception import network
from ganforge_inception.options import TF_FID_FILE, TF_FID_URL, tf_fid_cached
from support import build_context

REGISTRY = get_registry()
ENV = network.ENV
HUB_FILE = "inception_v3_google-0cc3c7bd.pth"  # torchvision's Inception_V3_Weights.IMAGENET1K_V1
CPU = torch.device("cpu")


def calibrate(model: torch.nn.Module, images: torch.Tensor) -> None:
    """Set BatchNorm's running statistics to those of ``images`` (one training-mode pass)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # running statistics = those of the one batch
    with torch.no_grad():
        model.train()(images)


def saved(model: torch.nn.Module, path: Path) -> Path:
    """``model``'s state dict in ``path``, without BatchNorm's batch counters (as published files are)."""
    torch.save({k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}, path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random inception_v3 state dict laid out like torchvision's file (with the auxiliary
    head and the 1,000-way classifier, without BatchNorm's batch counters)."""
    from torchvision.models import inception_v3

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = inception_v3(weights=None, aux_logits=True, init_weights=False)
            aux, model.AuxLogits = model.AuxLogits, None  # the auxiliary head needs 299x299 inputs
            calibrate(model, torch.rand(2, 3, 128, 128) * 2 - 1)
            model.AuxLogits = aux
    finally:
        torch.set_num_threads(threads)
    return saved(model, tmp_path_factory.mktemp("inception") / "inception-random.pt")


@pytest.fixture(scope="module")
def state(weights: Path) -> dict[str, torch.Tensor]:
    return torch.load(weights, weights_only=True)


def pytorch_fid_network(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """pytorch-fid's own InceptionV3 (2,048 pool features), its downloader replaced by ``state``."""
    with mock.patch.object(pytorch_fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: state):
        return pytorch_fid_inception.InceptionV3([3]).eval()


@pytest.fixture(scope="module")
def tf_fid_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random state dict of pytorch-fid's TF-FID Inception, laid out like its published file.

    pytorch-fid builds its network and then loads its weights, strictly, from what its
    downloader returns: here a random state dict of torchvision's inception_v3 with
    1,008 classes, whose tensors have the same names and shapes (pytorch-fid patches
    only the forward of four kinds of block)."""
    from torchvision.models import inception_v3

    with torch.random.fork_rng():
        torch.manual_seed(0)
        start = inception_v3(num_classes=1008, aux_logits=False, init_weights=False).state_dict()
        with mock.patch.object(pytorch_fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: start):
            model = pytorch_fid_inception.fid_inception_v3()
        # Calibrated at 299x299 on upsampled noise, like the test images below.
        calibrate(model, F.interpolate(torch.rand(2, 3, 32, 32) * 2 - 1, size=(299, 299), mode="bilinear"))
    return saved(model, tmp_path_factory.mktemp("tf-fid") / "pt_inception-random.pth")


@pytest.fixture(scope="module")
def tf_fid_state(tf_fid_weights: Path) -> dict[str, torch.Tensor]:
    return torch.load(tf_fid_weights, weights_only=True)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    component = REGISTRY.get("dataset", "mnist-5k")
    return component.build(component.validate({}), build_context())


@pytest.fixture(autouse=True)
def no_weights_in_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No weights variable, and an empty torch.hub cache (a user's pytorch-fid file would be found)."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # torch.hub.set_dir() would override $TORCH_HOME
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def metric(name: str, **options):
    component = REGISTRY.get("metric", name)
    return component.build(component.validate(options), build_context((1, 28, 28)))


def noise(n: int) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28) * 2 - 1


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(text: str) -> str:
    assert "\n" not in text.strip() and "Traceback" not in text, text
    return text


# -- the metrics ----------------------------------------------------------------------


def test_fid_records_its_provenance_and_says_its_network_and_noise_scores_above_the_real_floor(
    weights: Path, digits: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(5)
    values = metric("inception-fid", weights=str(weights), samples=2, batch_size=2).compute(noise, digits)
    said = "inception-fid: torchvision inception_v3 (ImageNet weights, not the TF-FID graph of papers), weights"
    assert capsys.readouterr().err == f"{said} {weights}\n"
    assert set(values) == {"fid", "real-floor", "n"} and values["n"] == 2.0
    assert all(isinstance(v, float) and math.isfinite(v) for v in values.values()), values
    assert values["fid"] > values["real-floor"] > 0
    record = json.loads((Path(os.environ["GANFORGE_CACHE"]) / "metrics-provenance.json").read_text())["inception-fid"]
    assert record["weights_sha256"] == sha256(weights)
    assert Path(record["weights"]) == weights and record["weights_source"] == "file"
    assert (record["n_real"], record["n_fake"], record["seed"]) == (4, 2, 5)
    assert record["feature_extractor"] == (
        "torchvision inception_v3 (ImageNet weights, not the TF-FID graph of papers): 2048 pool features of images "
        "resized to 299x299 (bilinear)"
    )


def test_features_do_not_depend_on_the_batch_so_real_against_itself_is_zero(weights: Path, digits: Dataset) -> None:
    extractor = network.load(str(weights), download=False)
    cpu = torch.device("cpu")
    real = digits.take(range(2))
    whole = network.features(extractor.model, real, 2, cpu)
    one_by_one = network.features(extractor.model, real, 1, cpu)
    assert whole.shape == (2, network.FEATURES) and torch.isfinite(whole).all()
    spread = float(whole.var(0).sum())  # the trace of their covariance: the scale of a FID between them
    assert spread > 0  # the random network separates two different digits
    assert fid(one_by_one, whole) <= 1e-9 * spread  # (noise against real is in the test above)


TINY_RUN = ["--gen", "dcgan:width=4,z_dim=8", "--disc", "dcgan:width=4", "--data", "mnist-5k:size=16", "--steps", "1",
            "--device", "cpu", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def kid_run(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-step run that names inception-kid (so it is evaluated at the end)."""
    out = tmp_path_factory.mktemp("kid") / "run"
    named = f"inception-kid:weights={weights},samples=2,batch_size=2"
    result = CliRunner().invoke(app, ["run", *TINY_RUN, "--seed", "4", "--metric", named, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_a_run_evaluates_inception_kid_only_when_named(weights: Path, kid_run: Path) -> None:
    results = json.loads((kid_run / "results.json").read_text())
    assert set(results) == {"inception-kid/kid", "inception-kid/real-floor", "inception-kid/n"}
    saved = json.loads((kid_run / "config.json").read_text())["metrics"]
    assert saved == [{"name": "inception-kid", "options": {
        "download": False, "weights": str(weights), "samples": 2, "splits": 5, "batch_size": 2}}]  # fmt: skip
    record = json.loads((Path(os.environ["GANFORGE_CACHE"]) / "metrics-provenance.json").read_text())["inception-kid"]
    assert record["weights_sha256"] == sha256(weights)
    assert (record["n_real"], record["n_fake"], record["seed"]) == (4, 2, 4 + 2)  # metrics run under seed + 2
    # Opt-in: never a default metric, on plain images or on digits (where classifier-fid is).
    for data in ("mnist-5k", "mnist-5k:size=32", "stacked-mnist"):
        chosen = [m.component.name for m in resolve(RunConfig(dataset=data), REGISTRY).metrics]
        assert not {"inception-fid", "inception-kid"} & set(chosen), (data, chosen)


def test_the_metrics_are_listed_by_ganforge_plugins() -> None:
    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    components = [c for plugin in json.loads(result.output)["plugins"] for c in plugin["components"]]
    found = {c["name"]: c for c in components if c["kind"] == "metric"}
    for name in ("inception-fid", "inception-kid"):
        assert [o["name"] for o in found[name]["options"]] == ["download", "weights", "samples", "splits", "batch_size"]
        assert found[name]["requires"] == ["image"] and found[name]["traits"] == ["opt-in"]


# -- where the weights come from ------------------------------------------------------


def test_the_environment_variable_is_the_default_and_is_recorded(weights: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV, str(weights))
    options = REGISTRY.get("metric", "inception-fid").validate({})
    assert options.weights == str(weights) and not options.download


def test_without_weights_naming_the_metric_says_what_to_do_in_one_line(tmp_path: Path, digits: Dataset) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(RunConfig(metrics=["inception-fid"]), REGISTRY)
    message = one_line(str(caught.value))
    assert message.startswith("metric 'inception-fid': option 'weights'")
    assert f"no Inception weights: for papers' TF-FID network, save pytorch-fid's {TF_FID_URL} as " \
        f"{tmp_path / 'torch' / 'hub' / 'checkpoints' / TF_FID_FILE}, or give weights=FILE or {ENV}=FILE, " \
        "or download=true for torchvision's ImageNet weights (not papers' FIDs) (got None)" in message
    # A run stops before it trains.
    result = CliRunner().invoke(app, ["run", *TINY_RUN, "--metric", "inception-kid", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and one_line(result.stderr).startswith("error: metric 'inception-kid'")
    assert not (tmp_path / "run").exists()
    # Outside a run the options are valid (ganforge eval validates them so); running says the same.
    drawn: list[int] = []
    with pytest.raises(ConfigError, match=r"^metric 'inception-fid': no Inception weights: for papers' TF-FID network"):
        metric("inception-fid").compute(drawn.append, digits)
    assert drawn == []


def ganforge_eval(run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """``ganforge eval`` in a subprocess, as a user runs it (without the weights variable)."""
    env = {k: v for k, v in os.environ.items() if k not in {ENV, "GANFORGE_PLUGINS"}}
    command = [str(Path(sys.executable).parent / "ganforge"), "eval", str(run_dir), "--device", "cpu", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)


def test_ganforge_eval_without_weights_is_one_error_line(kid_run: Path) -> None:
    result = ganforge_eval(kid_run, "--metric", "inception-fid")
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr.strip())
    assert line.startswith("error: metric 'inception-fid'") and "no Inception weights" in line


def test_ganforge_eval_with_a_file_that_is_not_a_checkpoint_is_one_error_line(kid_run, tmp_path, monkeypatch) -> None:
    bad = tmp_path / "inception.pt"
    bad.write_text("not a checkpoint\n")
    monkeypatch.setenv(ENV, str(bad))
    result = CliRunner().invoke(app, ["eval", str(kid_run), "--device", "cpu", "--metric", "inception-fid"])
    assert result.exit_code == 2, result.output
    line = one_line(result.stderr.strip())
    assert line.startswith(f"error: metric 'inception-fid': {bad} is not a checkpoint"), line


def test_ganforge_eval_passes_metric_options(kid_run: Path, tmp_path: Path, monkeypatch) -> None:
    """``--metric NAME:key=value`` reaches the metric: here a weights file that is not there."""
    monkeypatch.delenv(ENV, raising=False)
    missing = tmp_path / "nowhere.pth"
    result = CliRunner().invoke(
        app, ["eval", str(kid_run), "--device", "cpu", "--metric", f"inception-fid:weights={missing}"]
    )
    assert result.exit_code == 2, result.output
    line = one_line(result.stderr.strip())
    assert line.startswith("error: metric 'inception-fid'") and str(missing) in line, line
    bad = CliRunner().invoke(app, ["eval", str(kid_run), "--device", "cpu", "--metric", "inception-fid:samples=0"])
    assert bad.exit_code == 2 and "samples" in one_line(bad.stderr.strip())
    typo = CliRunner().invoke(app, ["eval", str(kid_run), "--device", "cpu", "--metric", "inception-fid:weights"])
    assert typo.exit_code == 2 and "key=value" in one_line(typo.stderr.strip())


class Unpicklable:
    """Would run code when unpickled: weights_only loading must refuse it."""

    def __reduce__(self):
        return (Path.touch, (Path(os.environ["GANFORGE_CACHE"]) / "unpickled",))


def wrong_files(
    state: dict[str, torch.Tensor], tf_fid: dict[str, torch.Tensor], folder: Path
) -> list[tuple[Path, str]]:
    """(file, what its one-line error says) for each way a weights file can be wrong."""
    cases = []

    def save(name: str, obj, expected: str) -> None:
        torch.save(obj, folder / name)
        cases.append((folder / name, expected))

    (folder / "text.pt").write_text("hello")
    cases.append((folder / "text.pt", "is not a checkpoint that torch.load(weights_only=True) reads"))
    save("pickle.pt", Unpicklable(), "is not a checkpoint that torch.load(weights_only=True) reads")
    save("list.pt", [torch.zeros(2)], "holds a list, not a state dict of tensors")
    save(
        "other.pt",
        {"conv.weight": torch.zeros(2)},
        "is not an Inception v3 state dict: 470 of its 470 keys are "
        "missing (Conv2d_1a_3x3.conv.weight, Conv2d_1a_3x3.bn.weight, Conv2d_1a_3x3.bn.bias, ...); 1 unexpected "
        "(conv.weight)",
    )
    shapes = dict(state, **{"Mixed_5b.branch1x1.conv.weight": torch.zeros(64, 192, 3, 3)})
    save("shape.pt", shapes, "Mixed_5b.branch1x1.conv.weight has shape [64, 192, 3, 3], expected [64, 192, 1, 1]")
    # A 1,008-way classifier makes a file pytorch-fid's, which loads it strictly.
    both = dict(state, **{"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)})
    save("aux.pt", both, "does not fit pytorch-fid's InceptionV3: Unexpected key(s) in state_dict: \"AuxLogits.")
    tf_shapes = dict(tf_fid, **{"Mixed_5b.branch1x1.conv.weight": torch.zeros(64, 192, 3, 3)})
    save("tf-shape.pt", tf_shapes, "tf-shape.pt does not fit pytorch-fid's InceptionV3: size mismatch for "
         "Mixed_5b.branch1x1.conv.weight: copying a param with shape torch.Size([64, 192, 3, 3]) from checkpoint")
    cases.append((folder / "missing.pt", f"weights file not found: {folder / 'missing.pt'} (pytorch-fid's TF-FID "
                  f"Inception weights, the network of papers' FIDs, are {TF_FID_URL})"))  # fmt: skip
    return cases


def test_a_wrong_weights_file_is_one_line_naming_what_is_wrong(state, tf_fid_state, tmp_path, digits) -> None:
    for path, expected in wrong_files(state, tf_fid_state, tmp_path):
        with pytest.raises(network.WeightsError) as caught:
            network.load(str(path), download=False)
        assert expected in one_line(str(caught.value)), (path.name, str(caught.value))
    assert not (Path(os.environ["GANFORGE_CACHE"]) / "unpickled").exists()
    # Through the metric, before any sample is drawn: a ConfigError naming the metric.
    drawn = []
    with pytest.raises(ConfigError, match=r"^metric 'inception-fid': .*shape\.pt does not fit Inception v3"):
        metric("inception-fid", weights=str(tmp_path / "shape.pt"), samples=2).compute(drawn.append, digits)
    assert drawn == []


def test_checkpoints_nesting_the_state_dict_or_saved_from_data_parallel_load(state, tmp_path: Path) -> None:
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "nested.pt")
    assert network.load(str(tmp_path / "nested.pt"), download=False).sha256 == sha256(tmp_path / "nested.pt")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "parallel.pt")
    network.load(str(tmp_path / "parallel.pt"), download=False)


@pytest.fixture()
def attempts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A list of attempts to reach the network, each of which fails."""
    tried: list[str] = []

    def refuse(name: str):
        def refused(*args, **kwargs):
            tried.append(name)
            raise OSError(f"{name}: no network in the tests")

        return refused

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse("download_url_to_file"))
    monkeypatch.setattr(urllib.request, "urlopen", refuse("urlopen"))
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    return tried


@pytest.fixture()
def cached(tmp_path: Path) -> Path:
    """Where torch.hub keeps torchvision's Inception v3 file under the temporary $TORCH_HOME."""
    return tmp_path / "torch" / "hub" / "checkpoints" / HUB_FILE


def test_download_reads_torch_hubs_cache_without_the_network(weights, attempts, cached, monkeypatch) -> None:
    cached.parent.mkdir(parents=True)
    shutil.copyfile(weights, cached)
    assert network.hub_path() == cached
    options = REGISTRY.get("metric", "inception-fid").validate({"download": "true"})
    assert options.download and options.weights is None
    loads = []
    real_load = torch.load

    def spy(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    extractor = network.load(options.weights, options.download)
    assert extractor.path == cached and extractor.sha256 == sha256(weights)
    assert extractor.source == "torch.hub cache" and loads == [True]
    assert attempts == []


def test_download_without_the_cached_file_tries_torch_hub_and_says_so(attempts, cached) -> None:
    with pytest.raises(network.WeightsError) as caught:
        network.load(None, download=True)
    message = one_line(str(caught.value))
    assert message.startswith("could not download torchvision's Inception v3 weights") and str(cached) in message
    assert "no network in the tests" in message and message.endswith(f"give weights=FILE or {ENV}=FILE")
    assert attempts == ["download_url_to_file"]  # the download path exists, and it is torch.hub's


# -- pytorch-fid's TF-FID network ------------------------------------------------------


def png(path: Path, pixels: torch.Tensor) -> str:
    """One uint8 image ``[C, H, W]`` as a PNG file (grey for one channel), which pytorch-fid reads."""
    array = pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy()
    Image.fromarray(array).save(path)
    return str(path)


def pytorch_fid_fid(a: torch.Tensor, b: torch.Tensor) -> float:
    """pytorch-fid's calculate_frechet_distance of the rows of ``a`` and ``b`` (few rows each).

    FID depends on the features only through the affine span of all the rows, so both
    sets are first written in an orthonormal basis of it (3 coordinates for 2 + 2 rows):
    no term of the distance changes, and scipy's sqrtm takes a 3x3 matrix instead of a
    2048x2048 one (close to three minutes on this shared machine)."""
    rows = torch.cat([a, b])
    basis = torch.linalg.qr((rows[1:] - rows[0]).T).Q
    x, y = (((features - rows[0]) @ basis).numpy() for features in (a, b))
    return float(calculate_frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)))


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # scipy's sqrtm of a rank-1 product: exact here
@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated")  # pytorch-fid's call of scipy
def test_tf_fid_features_and_fid_equal_pytorch_fids_own_pipeline(
    tf_fid_weights: Path, tf_fid_state, digits: Dataset, attempts: list[str], tmp_path: Path
) -> None:
    """Two images at each size, grey MNIST digits and RGB noise, enlarged or shrunk (without
    antialiasing, as pytorch-fid does) to 299x299: ganforge's features of the images in [-1, 1]
    and its FIDs equal pytorch-fid's get_activations of the same images as PNG files (read,
    resized and normalised by pytorch-fid) and its calculate_frechet_distance."""
    extractor = network.load(str(tf_fid_weights), download=False)
    assert extractor.network == f"pytorch-fid {version('pytorch-fid')} InceptionV3 (the TF-FID graph of papers)"
    reference = pytorch_fid_network(tf_fid_state)  # built from the same file, by pytorch-fid alone
    grey = digits.samples[:2]  # the digits as 8-bit pixels
    noise = torch.Generator().manual_seed(3)
    images = {
        "28x28 grey": grey,
        "32x32 RGB": torch.randint(0, 256, (2, 3, 32, 32), generator=noise, dtype=torch.uint8),
        "64x64 RGB": torch.randint(0, 256, (2, 3, 64, 64), generator=noise, dtype=torch.uint8),
        "512x512 RGB": torch.randint(0, 256, (2, 3, 512, 512), generator=noise, dtype=torch.uint8),  # shrunk
    }
    ours, theirs = {}, {}
    for name, pixels in images.items():
        files = [png(tmp_path / f"{name}-{i}.png", image) for i, image in enumerate(pixels)]
        found = get_activations(files, reference, batch_size=2, dims=2048, device="cpu", num_workers=0)
        theirs[name] = torch.from_numpy(found)
        ours[name] = network.features(extractor.model, pixels / 127.5 - 1, 2, CPU)
        scale = float(theirs[name].abs().max())
        assert ours[name].shape == (2, 2048) and 1e-3 < scale < 1e4, (name, scale)  # neither vanish nor explode
        assert float((ours[name] - theirs[name]).abs().max()) <= 1e-4 * scale, name  # float32, 90 layers deep
    for a, b in (("28x28 grey", "32x32 RGB"), ("32x32 RGB", "64x64 RGB"), ("64x64 RGB", "512x512 RGB")):
        expected = pytorch_fid_fid(theirs[a], theirs[b])
        assert expected > 0 and fid(ours[a], ours[b]) == pytest.approx(expected, rel=1e-6), (a, b)
    assert attempts == []


def test_the_tf_fid_file_in_torch_hubs_cache_is_the_default_and_a_run_says_so(
    tf_fid_weights: Path, attempts: list[str], tmp_path: Path
) -> None:
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid's
    assert tf_fid_cached() == cached
    cached.parent.mkdir(parents=True)
    shutil.copyfile(tf_fid_weights, cached)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", *TINY_RUN, "--metric", "inception-fid:samples=2,batch_size=2,splits=1",
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"inception-fid: pytorch-fid {version('pytorch-fid')} InceptionV3 (the TF-FID graph of papers), " \
        f"weights {cached}\n" in result.stderr
    saved_options = json.loads((out / "config.json").read_text())["metrics"][0]["options"]
    assert saved_options["weights"] == str(cached) and not saved_options["download"]
    results = json.loads((out / "results.json").read_text())
    assert results["inception-fid/fid"] > results["inception-fid/real-floor"] > 0
    record = json.loads((Path(os.environ["GANFORGE_CACHE"]) / "metrics-provenance.json").read_text())["inception-fid"]
    assert record["feature_extractor"].startswith(f"pytorch-fid {version('pytorch-fid')} InceptionV3 (the TF-FID")
    assert (record["weights"], record["weights_source"]) == (str(cached), "torch.hub cache")
    assert record["weights_sha256"] == sha256(tf_fid_weights) and attempts == []


def test_our_download_address_is_pytorch_fids() -> None:
    assert TF_FID_URL == pytorch_fid_inception.FID_WEIGHTS_URL and TF_FID_URL.endswith(f"/{TF_FID_FILE}")


def test_tf_fid_weights_without_pytorch_fid_are_one_line_naming_the_extra(tf_fid_weights, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pytorch_fid", None)  # its import fails, as when it is not installed
    with pytest.raises(network.WeightsError) as caught:
        network.load(str(tf_fid_weights), download=False)
    assert one_line(str(caught.value)) == (
        f"{tf_fid_weights} holds pytorch-fid's TF-FID Inception weights, whose network comes from the "
        "package pytorch-fid: pip install 'ganforge[tf-fid]'"
    )


# -- datasets that are not images -----------------------------------------------------


def test_a_non_image_dataset_is_one_line(weights: Path) -> None:
    config = RunConfig(generator="mlp", dataset="ring-8", metrics=[f"inception-fid:weights={weights}"])
    with pytest.raises(ConfigError, match="^metric 'inception-fid' needs image dataset, but dataset 'ring-8'"):
        resolve(config, REGISTRY)
    points = Dataset(samples=torch.randn(100, 2))
    with pytest.raises(ConfigError, match=r"^metric 'inception-fid': Inception features need images .*\[100, 2\]"):
        metric("inception-fid", weights=str(weights)).compute(lambda n: torch.randn(n, 2), points)
