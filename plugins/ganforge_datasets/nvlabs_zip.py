"""``zip``: NVlabs' dataset format, read in place: a zip of PNGs with optional ``dataset.json``.

stylegan2-ada-pytorch's ``dataset_tool.py`` writes ``00000/img00000000.png, ...``
(8-bit greyscale or RGB, all one size) and ``dataset.json``:
``{"labels": [["00000/img00000000.png", 6], ...]}`` or ``{"labels": null}``. Its
``training/dataset.py`` reads the images in sorted name order; so does this.

Nothing is ever extracted to disk. Before zipfile parses the directory, its entry
count is read from the end-of-directory record (zip64's too) and a zip of more than
:data:`MAX_MEMBERS` members is refused: zipfile holds about half a kilobyte per member
in memory, in every process that opens it. Before any image is decoded the zip is checked
in full from its directory and each member's first 33 bytes (the PNG IHDR chunk):
member names that are absolute or climb out with ``..`` refuse the zip; every PNG
must have the first one's size and mode; a member that declares more uncompressed
bytes than a PNG of that size can need is refused (a zip bomb), and zipfile never
inflates a member past its declared size. Each problem is one DataError line.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganforge_core import BuildContext, DataError, Dataset
from ganforge_core.datasource import StorageDtype
from ganforge_datasets.images import Policy, decode_bytes
from ganforge_datasets.options import ZipOptions
from ganforge_datasets.sources import as_dataset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADER_BYTES = 33  # signature (8) + IHDR length and type (8) + width, height, depth, colour type... (17)
COLOUR_TYPES = {0: 1, 2: 3}  # 8-bit greyscale, 8-bit RGB: what dataset_tool.py writes
MAX_SIDE = 16_384
MAX_LABELS_BYTES = 256 << 20  # dataset.json: a million labelled names fit in well under this
MAX_CLASSES = 1_000_000
MAX_MEMBERS = 2_000_000  # ~1 GB of zipfile's directory objects per process that opens the zip
END_RECORD = struct.Struct("<4s4H2LH")  # signature, disks, entries here, entries, size, offset, comment
ZIP64_LOCATOR = struct.Struct("<4sLQL")  # signature, disk, offset of the zip64 end record, disks
ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")  # ..., entries here, entries, size, offset
UNSAFE = re.compile(r"(^[/\\])|(^[A-Za-z]:)|((^|[/\\])\.\.([/\\]|$))")


def png_limit(width: int, height: int, channels: int) -> int:
    """The most bytes a PNG of this size needs: its raw scanlines (a filter byte each) stored
    uncompressed twice over, plus 1 MiB for chunks (text, colour profile) beside the pixels."""
    return 2 * height * (1 + width * channels) + (1 << 20)


@dataclass
class ZipSource:
    """PNG members of one zip, decoded per read (a SampleSource); the zip is opened once per process."""

    path: Path
    members: list[str]
    labels: torch.Tensor | None
    channels: int
    side: int
    size: int | None
    policy: Policy
    dtype: StorageDtype = field(default="uint8", init=False)
    shape: tuple[int, ...] = field(default=(), init=False)
    _zip: zipfile.ZipFile | None = field(default=None, init=False, repr=False)
    _pid: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.shape = (self.channels, self.size or self.side, self.size or self.side)

    def __len__(self) -> int:
        return len(self.members)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_zip": None, "_pid": 0}  # a worker opens its own handle

    def _opened(self) -> zipfile.ZipFile:
        if self._zip is None or self._pid != os.getpid():  # a forked worker must not share the file offset
            self._zip, self._pid = open_zip(self.path), os.getpid()
        return self._zip

    def decode(self, index: int) -> np.ndarray:
        name = self.members[index]
        try:
            data = self._opened().read(name)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            raise DataError(f"dataset 'zip': cannot read {name} in {self.path}: {exc}") from None
        try:
            return decode_bytes(data, f"{self.path}:{name}", self.size, self.channels, self.policy)
        except DataError as exc:
            raise DataError(f"dataset 'zip': {exc}") from None

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        out = np.empty((len(indices), *self.shape), dtype=np.uint8)
        for row, index in enumerate(indices):
            out[row] = self.decode(index)
        return torch.from_numpy(out)


def member_count(path: Path) -> int | None:
    """The entry count a zip's end-of-directory record declares (zip64's when it has one), read
    without parsing the directory; None when there is no such record (zipfile then says why)."""
    with path.open("rb") as file:
        size = file.seek(0, os.SEEK_END)
        tail_start = max(0, size - END_RECORD.size - 0xFFFF)  # the record ends the file, after its comment
        file.seek(tail_start)
        tail = file.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < END_RECORD.size:
            return None
        entries = int(END_RECORD.unpack_from(tail, at)[4])
        locator = at - ZIP64_LOCATOR.size
        if locator < 0 or tail[locator : locator + 4] != b"PK\x06\x07":
            return entries
        file.seek(ZIP64_LOCATOR.unpack_from(tail, locator)[2])
        record = file.read(ZIP64_END_RECORD.size)
        if len(record) < ZIP64_END_RECORD.size or not record.startswith(b"PK\x06\x06"):
            return entries
        return int(ZIP64_END_RECORD.unpack(record)[7])


def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        count = member_count(path)
    except FileNotFoundError:
        raise DataError(f"dataset 'zip': {path} does not exist; pass path=FILE.zip") from None
    except OSError as exc:
        raise DataError(f"dataset 'zip': cannot read {path}: {exc}") from None
    if count is not None and count > MAX_MEMBERS:
        raise DataError(
            f"dataset 'zip': {path} declares {count:,} members, more than {MAX_MEMBERS:,} (zipfile keeps about "
            "0.5 kB a member in memory in every loader process); split it, or extract it to a folder and "
            "run 'ganforge data prepare'"
        )
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise DataError(f"dataset 'zip': {path} does not exist; pass path=FILE.zip") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise DataError(f"dataset 'zip': {path} is not a readable zip (truncated or corrupt?): {exc}") from None


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> tuple[int, int, int]:
    """(width, height, channels) from a PNG member's IHDR chunk, read without inflating the rest."""
    try:
        with archive.open(info) as member:
            head = member.read(HEADER_BYTES)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
        raise DataError(f"dataset 'zip': cannot read {info.filename} in {path}: {exc}") from None
    if len(head) < HEADER_BYTES or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        raise DataError(f"dataset 'zip': {info.filename} in {path} is not a PNG")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    if depth != 8 or colour not in COLOUR_TYPES:
        raise DataError(
            f"dataset 'zip': {info.filename} in {path} is a {depth}-bit PNG of colour type {colour}; "
            "ganforge reads 8-bit greyscale or RGB PNGs (as dataset_tool.py writes them)"
        )
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise DataError(f"dataset 'zip': {info.filename} in {path} declares {width}x{height} pixels (at most {MAX_SIDE})")
    return width, height, COLOUR_TYPES[colour]


def _labels(archive: zipfile.ZipFile, path: Path, members: list[str]) -> tuple[list[int] | None, str]:
    """Each member's label from dataset.json (None without labels), and a problem, if any."""
    if "dataset.json" not in archive.namelist():
        return None, ""
    info = archive.getinfo("dataset.json")
    if info.file_size > MAX_LABELS_BYTES:
        return None, f"dataset.json declares {info.file_size:,} bytes (at most {MAX_LABELS_BYTES:,})"
    try:
        meta = json.loads(archive.read(info))
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        return None, f"dataset.json is not readable JSON: {exc}"
    pairs = meta.get("labels") if isinstance(meta, dict) else "?"
    if pairs is None:
        return None, ""
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
        return None, 'dataset.json\'s "labels" is not a list of [file name, label] pairs'
    by_name = {name.replace("\\", "/"): label for name, label in pairs}
    bad = [label for label in by_name.values() if type(label) is not int or not 0 <= label < MAX_CLASSES]
    if bad:
        return None, f"dataset.json has a label that is not a class index in [0, {MAX_CLASSES:,}): {str(bad[0])[:80]}"
    missing = [name for name in members if name not in by_name]
    extra = sorted(set(by_name) - set(members))
    if missing or extra:
        what = []
        if missing:
            what.append(f"{len(missing):,} images have no label (first: {missing[0]})")
        if extra:
            what.append(f"{len(extra):,} labels name no image in the zip (first: {extra[0][:200]})")
        return None, f"dataset.json's labels do not match the images: {'; '.join(what)}"
    return [by_name[name] for name in members], ""


def open_nvlabs_zip(path: Path, size: int | None = None, channels: int | None = None,
                    policy: Policy = "center-crop") -> tuple[ZipSource, list[str]]:
    """The checked source of an NVlabs zip and its class names (``channels`` None: the PNGs' own)."""
    archive = open_zip(path)
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        unsafe = [info.filename for info in infos if UNSAFE.search(info.filename)]
        if unsafe:
            raise DataError(
                f"dataset 'zip': {path} has {len(unsafe):,} members with absolute or '..' paths "
                f"(first: {unsafe[0][:200]!r}); refusing it"
            )
        pngs = sorted((info for info in infos if info.filename.lower().endswith(".png")), key=lambda i: i.filename)
        if not pngs:
            raise DataError(f"dataset 'zip': no PNG images in {path}")
        first = _header(archive, pngs[0], path)
        limit = png_limit(*first)
        for info in pngs:
            if info.file_size > limit:
                raise DataError(
                    f"dataset 'zip': {info.filename} in {path} declares {info.file_size:,} bytes uncompressed, more "
                    f"than a {first[0]}x{first[1]} PNG needs ({limit:,}); refusing it (a zip bomb?)"
                )
            found = _header(archive, info, path)
            if found != first:
                raise DataError(
                    f"dataset 'zip': images of mixed sizes or modes in {path}: {pngs[0].filename} is "
                    f"{_describe(first)}, {info.filename} is {_describe(found)}"
                )
        members = [info.filename for info in pngs]
        labels, problem = _labels(archive, path, members)
    if problem:
        raise DataError(f"dataset 'zip': {path}: {problem}")
    width, height, own = first
    if width != height and policy == "refuse":
        raise DataError(f"dataset 'zip': the images in {path} are {width}x{height}, not square (policy=refuse); "
                        "choose policy=center-crop or policy=pad")
    side = min(width, height) if policy == "center-crop" else max(width, height)
    classes = 1 + max(labels) if labels else 1
    tensor = torch.tensor(labels if labels is not None else [0] * len(members), dtype=torch.long)
    source = ZipSource(path, members, tensor, channels or own, side, size, policy)
    return source, [str(i) for i in range(classes)]


def _describe(header: tuple[int, int, int]) -> str:
    width, height, channels = header
    return f"{width}x{height} {'greyscale' if channels == 1 else 'RGB'}"


def load_zip(options: ZipOptions, ctx: BuildContext) -> Dataset:
    if options.path is None:
        raise DataError("dataset 'zip' needs path=FILE.zip, a zip of PNGs as stylegan2-ada's dataset_tool.py writes")
    source, classes = open_nvlabs_zip(options.path.expanduser(), options.size, policy=options.policy)
    return as_dataset(source, len(classes), {"classes": classes})
