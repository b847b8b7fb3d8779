"""Real data's formats: ``ganforge data prepare``, the ``prepared`` and ``zip`` datasets, and
``folder`` as a source: pixels and labels exactly, and every bad input as one line, exit 2,
with nothing half-written left behind."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ganforge_core import DataError, get_registry
from ganforge_core.cli import app
from ganforge_core.datasource import SampleSource
from ganforge_core.testing import build_context
from ganforge_datasets import prepare as prepare_module
from ganforge_datasets.folder import FolderSource, open_folder
from ganforge_datasets.nvlabs_zip import open_nvlabs_zip
from ganforge_datasets.prepare import prepare
from ganforge_datasets.prepared import open_prepared

RNG = np.random.default_rng(0)


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_folder(root: Path, classes: dict[str, int], height: int = 12, width: int = 16) -> dict[str, list[np.ndarray]]:
    """``classes[name]`` RGB PNGs of height x width per sub-folder; the pixels written, [H, W, 3] each."""
    written: dict[str, list[np.ndarray]] = {}
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        written[name] = []
        for i in range(count):
            pixels = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
            (root / name / f"{i:03d}.png").write_bytes(png_bytes(pixels))
            written[name].append(pixels)
    return written


def nvlabs_name(index: int) -> str:
    return f"{index // 1000:05d}/img{index:08d}.png"  # dataset_tool.py's archive names


def write_zip(path: Path, images: list[np.ndarray], labels: list[int] | None, *, json_labels: object = "auto",
              extra: dict[str, bytes] | None = None) -> None:
    """A zip as dataset_tool.py writes it: stored PNGs, then dataset.json."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for index, pixels in enumerate(images):
            archive.writestr(nvlabs_name(index), png_bytes(pixels))
        for name, data in (extra or {}).items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
        pairs = None if labels is None else [[nvlabs_name(i), label] for i, label in enumerate(labels)]
        archive.writestr("dataset.json", json.dumps({"labels": pairs if json_labels == "auto" else json_labels}))


def chw(pixels: np.ndarray) -> np.ndarray:
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def build(name: str, **options):
    component = get_registry().get("dataset", name)
    return component.build(component.validate(options), build_context())


# -- prepare: pixels and labels exactly ------------------------------------------------------


@pytest.mark.parametrize(("policy", "size", "expected"), [
    ("center-crop", 12, lambda p: p[:, 2:14]),  # 12x16: the centred 12x12
    ("pad", 16, lambda p: np.pad(p, ((2, 2), (0, 0), (0, 0)))),  # black rows above and below
])  # fmt: skip
def test_prepare_round_trip_holds_the_source_pixels_and_sub_folder_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, size: int, expected
) -> None:
    written = write_folder(tmp_path / "src", {"cats": 5, "dogs": 4})
    monkeypatch.setattr(prepare_module, "SHARD_BYTES", 4 * 3 * size * size)  # 4 images a shard: 3 shards
    result = invoke("data", "prepare", tmp_path / "src", "--out", tmp_path / "out", "--size", size,
                    "--policy", policy, "--workers", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "prepared 9 images (3x" in result.output and "2 classes, 3 shards" in result.output

    source, classes = open_prepared(tmp_path / "out")
    assert classes == ["cats", "dogs"] and len(source) == 9 and source.shape == (3, size, size)
    assert isinstance(source, SampleSource) and source.dtype == "uint8"
    want = np.stack([chw(expected(p)) for name in ("cats", "dogs") for p in written[name]])
    order = [8, 0, 4, 3, 7, 1]  # across the shards, in any order
    assert source.read(order).dtype == torch.uint8
    np.testing.assert_array_equal(source.read(order).numpy(), want[order])
    assert source.labels.tolist() == [0] * 5 + [1] * 4
    dataset = build("prepared", root=str(tmp_path / "out"))
    assert dataset.samples is None and dataset.source is not None  # streamed or resident: the core decides
    torch.testing.assert_close(dataset.take(range(len(dataset))), torch.from_numpy(want).float() / 127.5 - 1, rtol=0, atol=0)
    assert dataset.labels.tolist() == [0] * 5 + [1] * 4 and dataset.info["classes"] == ["cats", "dogs"]


def test_prepare_reads_an_nvlabs_zip_with_its_dataset_json_labels(tmp_path: Path) -> None:
    images = [RNG.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(6)]  # greyscale
    labels = [3, 0, 2, 3, 1, 0]
    write_zip(tmp_path / "data.zip", images, labels)
    source, classes = open_nvlabs_zip(tmp_path / "data.zip")
    assert source.shape == (1, 8, 8) and classes == ["0", "1", "2", "3"]
    assert isinstance(source, SampleSource) and source.dtype == "uint8"
    np.testing.assert_array_equal(source.read(range(6)).numpy(), np.stack([chw(p) for p in images]))
    assert source.labels.tolist() == labels

    result = invoke("data", "prepare", tmp_path / "data.zip", "--out", tmp_path / "out", "--workers", "1")
    assert result.exit_code == 0, result.output
    prepared, prepared_classes = open_prepared(tmp_path / "out")
    np.testing.assert_array_equal(prepared.read(range(6)).numpy(), np.stack([chw(p) for p in images]))
    assert prepared.labels.tolist() == labels and prepared_classes == classes


def test_a_zip_without_labels_is_one_class_and_its_source_pickles_without_pixels(tmp_path: Path) -> None:
    images = [RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(4)]
    write_zip(tmp_path / "data.zip", images, None)
    source, classes = open_nvlabs_zip(tmp_path / "data.zip", size=8)
    assert classes == ["0"] and source.labels.tolist() == [0] * 4 and source.shape == (3, 8, 8)
    source.read([0])  # opens the zip in this process
    copy = pickle.loads(pickle.dumps(source))
    assert len(pickle.dumps(source)) < 2_000  # names and labels, never pixels or the open zip
    assert torch.equal(copy.read([3, 1]), source.read([3, 1]))


def test_folder_is_a_source_decoded_per_read_with_its_policy(tmp_path: Path) -> None:
    written = write_folder(tmp_path, {"a": 2, "b": 1}, height=10, width=8)
    source, classes, skipped = open_folder(tmp_path, size=8, channels=3, policy="center-crop")
    assert isinstance(source, FolderSource) and classes == ["a", "b"] and skipped == []
    assert isinstance(source, SampleSource) and source.dtype == "uint8" and source.shape == (3, 8, 8)
    assert len(pickle.dumps(source)) < 2_000
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(source)).read([2]).numpy()[0], chw(written["b"][0][1:9]))
    with pytest.raises(DataError, match=r"a/000.png: 8x10, not square"):  # found from the headers, before training
        open_folder(tmp_path, size=8, channels=3, policy="refuse")
    reading, _, _ = open_folder(tmp_path, size=8, channels=3)
    reading.policy = "refuse"
    with pytest.raises(DataError, match=r"a/000.png is 8x10, not square \(policy=refuse\)"):
        reading.read([0])
    padded = build("folder", root=str(tmp_path), size=10, policy="pad")  # 8 wide: one black column each side
    pixels = padded.take(range(len(padded)))
    assert (pixels[:, :, :, 0] == -1).all() and (pixels[:, :, :, 9] == -1).all()


def test_folder_skip_bad_counts_the_files_it_skips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_folder(tmp_path, {"a": 3})
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    dataset = build("folder", root=str(tmp_path), size=8, skip_bad=True)
    assert len(dataset) == 3
    assert "dataset 'folder': skipped 1 unreadable images (first: " in capsys.readouterr().err
    with pytest.raises(DataError, match="broken.png"):
        build("folder", root=str(tmp_path), size=8)


def test_prepare_skip_bad_reports_the_skipped_files_in_one_line(tmp_path: Path) -> None:
    written = write_folder(tmp_path / "src", {"a": 3, "b": 2}, height=8, width=8)
    (tmp_path / "src" / "a" / "001.png").write_bytes(png_bytes(written["a"][1])[:60])  # a truncated PNG
    result = invoke("data", "prepare", tmp_path / "src", "--out", tmp_path / "out", "--size", 8, "--skip-bad")
    assert result.exit_code == 0, result.output
    assert "prepared 4 images" in result.output and "skipped 1 unreadable files (first: cannot read image" in result.output
    assert "001.png" in result.output
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["skipped"] == 1
    source, _ = open_prepared(tmp_path / "out")
    assert source.labels.tolist() == [0, 0, 1, 1]  # each kept image keeps its own label
    kept = [written["a"][0], written["a"][2], *written["b"]]
    np.testing.assert_array_equal(source.read(range(4)).numpy(), np.stack([chw(p) for p in kept]))


# -- bad input: one line, exit 2, no output directory --------------------------------------


def _truncated_zip(path: Path) -> Path:
    write_zip(path, [RNG.integers(0, 256, (8, 8), dtype=np.uint8)] * 3, None)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _zip_of(path: Path, images: list[np.ndarray], labels: list[int] | None = None, **kwargs) -> Path:
    write_zip(path, images, labels, **kwargs)
    return path


GREY = [RNG.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(3)]
BAD_INPUTS = {
    "unreadable file": (lambda p: _broken_folder(p), ["cannot read image", "broken.png", "--skip-bad"]),
    "empty folder": (lambda p: _mkdir(p / "empty"), ["no images", "empty"]),
    "truncated zip": (lambda p: _truncated_zip(p / "t.zip"), ["t.zip is not a readable zip (truncated or corrupt?)"]),
    "label for no image": (
        lambda p: _zip_of(p / "m.zip", GREY, json_labels=[[nvlabs_name(i), 0] for i in range(4)]),
        ["labels do not match the images", "1 labels name no image", nvlabs_name(3)],
    ),
    "image without a label": (
        lambda p: _zip_of(p / "m.zip", GREY, json_labels=[[nvlabs_name(0), 1]]),
        ["labels do not match the images", "2 images have no label", nvlabs_name(1)],
    ),
    "mixed sizes": (
        lambda p: _zip_of(p / "s.zip", [*GREY, RNG.integers(0, 256, (10, 10), dtype=np.uint8)]),
        ["mixed sizes or modes", "8x8 greyscale", "10x10 greyscale"],
    ),
    "mixed modes": (
        lambda p: _zip_of(p / "s.zip", [*GREY, RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)]),
        ["mixed sizes or modes", "8x8 greyscale", "8x8 RGB"],
    ),
    "member climbing out": (
        lambda p: _zip_of(p / "u.zip", GREY, extra={"../../evil.png": png_bytes(GREY[0])}),
        ["absolute or '..' paths", "../../evil.png", "refusing it"],
    ),
    "absolute member": (
        lambda p: _zip_of(p / "u.zip", GREY, extra={"/etc/evil.png": png_bytes(GREY[0])}),
        ["absolute or '..' paths", "/etc/evil.png"],
    ),
    "oversized member": (
        lambda p: _zip_of(p / "b.zip", GREY, extra={"00000/img99999999.png": png_bytes(GREY[0]) + bytes(8 << 20)}),
        ["img99999999.png", "declares 8,388,", "(a zip bomb?)"],
    ),
}


def _broken_folder(path: Path) -> Path:
    write_folder(path / "src", {"a": 2})
    (path / "src" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return path / "src"


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_prepare_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path: Path, case: str) -> None:
    make, words = BAD_INPUTS[case]
    src = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    line = one_error_line(invoke("data", "prepare", src, "--out", tmp_path / "out", "--workers", "2"))
    assert all(word in line for word in words), line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no out, no partial directory


@pytest.mark.parametrize("case", [c for c in BAD_INPUTS if "zip" in c or "member" in c or "label" in c or "mixed" in c])
def test_the_zip_dataset_refuses_the_same_input_in_the_same_line(tmp_path: Path, case: str) -> None:
    make, words = BAD_INPUTS[case]
    with pytest.raises(DataError) as raised:
        build("zip", path=str(make(tmp_path)))
    assert "\n" not in str(raised.value) and all(word in str(raised.value) for word in words), raised.value


@pytest.mark.parametrize("members", [4, 0x10001], ids=["end record", "zip64 end record"])
def test_a_zip_of_too_many_members_is_refused_before_zipfile_parses_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: int
) -> None:
    from ganforge_datasets import nvlabs_zip

    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for index in range(members):
            archive.writestr(nvlabs_name(index), png_bytes(GREY[0]) if index == 0 else b"")
    assert (path.read_bytes().find(b"PK\x06\x06") >= 0) is (members > 0xFFFF)  # zip64 past 65,535 entries
    assert nvlabs_zip.member_count(path) == members
    monkeypatch.setattr(nvlabs_zip, "MAX_MEMBERS", members - 1)
    monkeypatch.setattr(nvlabs_zip.zipfile, "ZipFile", lambda *a, **k: pytest.fail("parsed the directory"))
    with pytest.raises(DataError) as raised:
        build("zip", path=str(path))
    assert str(raised.value) == (
        f"dataset 'zip': {path} declares {members:,} members, more than {members - 1:,} (zipfile keeps about "
        "0.5 kB a member in memory in every loader process); split it, or extract it to a folder and run "
        "'ganforge data prepare'"
    )


def test_an_interrupted_prepare_leaves_nothing_that_looks_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_folder(tmp_path / "src", {"a": 8})
    monkeypatch.setattr(prepare_module, "SHARD_BYTES", 2 * 3 * 8 * 8)  # shards written before the interruption
    decode, calls = FolderSource.decode, []

    def interrupted(self: FolderSource, index: int) -> np.ndarray:
        calls.append(index)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return decode(self, index)

    monkeypatch.setattr(FolderSource, "decode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(tmp_path / "src", tmp_path / "out", size=8, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    monkeypatch.setattr(FolderSource, "decode", decode)
    assert prepare(tmp_path / "src", tmp_path / "out", size=8, workers=1).count == 8  # and it can be run again


KILLED_AT_THE_SIXTH_IMAGE = """
import os, signal, sys
from pathlib import Path
from ganforge_datasets import prepare
from ganforge_datasets.folder import FolderSource
prepare.SHARD_BYTES = 2 * 3 * 8 * 8  # two shards written before the kill
decode, calls = FolderSource.decode, []
def killed(self, index):
    calls.append(index)
    if len(calls) == 6:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup runs: as when the machine goes down
    return decode(self, index)
FolderSource.decode = killed
prepare.prepare(Path(sys.argv[1]), Path(sys.argv[2]), size=8, workers=1)
"""


def test_a_killed_prepare_leaves_no_output_directory(tmp_path: Path) -> None:
    import subprocess
    import sys

    write_folder(tmp_path / "src", {"a": 8})
    done = subprocess.run([sys.executable, "-c", KILLED_AT_THE_SIXTH_IMAGE, tmp_path / "src", tmp_path / "out"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == -9, done.stderr
    assert not (tmp_path / "out").exists()  # so a rerun is not refused, and nothing reads a half
    (partial,) = [p for p in tmp_path.iterdir() if p.name != "src"]
    assert partial.name.startswith(".out.partial-") and not (partial / "manifest.json").exists()
    assert prepare(tmp_path / "src", tmp_path / "out", size=8, workers=1).count == 8


# -- the prepared directory: a hostile manifest is one line -------------------------------------


def _edit(root: Path, **fields) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    manifest.update(fields)
    (root / "manifest.json").write_text(json.dumps(manifest))


HOSTILE = {
    "negative count": ({"count": -1}, "count must be a whole number"),
    "huge count": ({"count": 10**15}, "count must be a whole number"),
    "count beyond its shards": ({"count": 5}, "its shards hold 4 images, not count=5"),
    "negative side": ({"shape": [3, -8, 8]}, "shape must be [1 or 3, H, W]"),
    "huge shape": ({"shape": [3, 10**9, 10**9]}, "shape must be [1 or 3, H, W]"),
    "shard outside": ({"shards": [{"file": "../../etc/passwd", "count": 4}]}, "shards must be a list"),
    "absolute shard": ({"shards": [{"file": "/tmp/shard-00000.npy", "count": 4}]}, "shards must be a list"),
    "labels outside": ({"labels": "../labels.npy"}, "labels must be 'labels.npy' or null"),
    "other version": ({"version": 2}, "format version 2"),
    "shape not the shard's": ({"shape": [1, 8, 8]}, "holds uint8 [4, 3, 8, 8], its manifest says uint8 [4, 1, 8, 8]"),
}


@pytest.fixture
def prepared_dir(tmp_path: Path) -> Path:
    write_folder(tmp_path / "src", {"a": 4})
    prepare(tmp_path / "src", tmp_path / "out", size=8, workers=1)
    return tmp_path / "out"


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_manifest_is_refused_in_one_line(prepared_dir: Path, case: str) -> None:
    fields, words = HOSTILE[case]
    _edit(prepared_dir, **fields)
    with pytest.raises(DataError) as raised:
        build("prepared", root=str(prepared_dir))
    assert "\n" not in str(raised.value) and words in str(raised.value), raised.value


def test_a_truncated_shard_or_a_missing_manifest_is_refused_in_one_line(prepared_dir: Path) -> None:
    shard = prepared_dir / "shard-00000.npy"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DataError, match="shard-00000.npy is not a readable .npy file"):
        build("prepared", root=str(prepared_dir))
    (prepared_dir / "manifest.json").unlink()
    with pytest.raises(DataError, match="no manifest.json in .*: not a prepared dataset"):
        build("prepared", root=str(prepared_dir))


# -- end to end ------------------------------------------------------------------------------


def test_a_run_trains_on_prepared_data_and_on_a_zip(tmp_path: Path) -> None:
    write_folder(tmp_path / "src", {"a": 6, "b": 6}, height=16, width=16)
    assert invoke("data", "prepare", tmp_path / "src", "--out", tmp_path / "prep", "--size", 16).exit_code == 0
    write_zip(tmp_path / "d.zip", [RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(12)], [0, 1] * 6)
    for data in (f"prepared:root={tmp_path / 'prep'}", f"zip:path={tmp_path / 'd.zip'}"):
        out = tmp_path / data.partition(":")[0]
        result = invoke("run", "--data", data, "--gen", "dcgan:width=4,z_dim=8", "--disc", "dcgan:width=4",
                        "--steps", 2, "--batch-size", 4, "--device", "cpu", "--metric", "none", "--out", out)  # fmt: skip
        assert result.exit_code == 0, result.output
        assert [json.loads(line).get("step") for line in (out / "metrics.jsonl").read_text().splitlines()][-1] == 2


def test_a_greyscale_folder_trains_from_the_command_line(tmp_path: Path) -> None:
    # `folder:channels=1` arrives as the text '1', which the option's Literal[1, 3] once refused
    write_folder(tmp_path / "images", {"a": 4, "b": 4}, height=16, width=16)
    result = CliRunner().invoke(app, [
        "run", "--data", f"folder:root={tmp_path / 'images'},size=16,channels=1", "--gen", "dcgan:width=4",
        "--disc", "dcgan:width=4", "--batch-size", "4", "--steps", "2", "--metric", "none", "--device", "cpu",
        "--out", str(tmp_path / "run"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"]["options"]["channels"] == 1
