"""``csv``: the logged statistics as a CSV file in the run directory, and the final metrics in another.

``RUN_DIR/FILE`` (``metrics.csv``) gets one row per ``log(step, stats)`` call,
flushed at once, with the columns ``step`` and the sorted statistic names of the
first record. A later record with a name the header lacks widens the header: the
file is rewritten with every column so far (sorted after ``step``), earlier rows
left empty in the new columns, so nothing is dropped silently. ``end`` writes
``results.csv`` (``step`` and the sorted metric names, one row) when the run has
final metrics; a run stopped by a signal has none and writes nothing.

Resumed (``run.start_step`` > 0), the logger keeps the rows up to the
checkpoint's step and drops later ones: those steps are trained, and logged,
again. No package beyond the standard library is needed.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ganforge_core import Logger, RunContext
from ganforge_hamming.options import RESULTS_FILE, CsvOptions


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV file's header and rows."""
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def write_rows(path: Path, header: list[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Replace ``path`` with ``header`` and ``rows`` in one rename, so a crash leaves the old file or the new."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, header, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


class CsvLogger(Logger):
    def __init__(self, options: CsvOptions, run: RunContext) -> None:
        self.path = Path(run.run_dir) / options.file
        self.results = Path(run.run_dir) / RESULTS_FILE
        self.header: list[str] | None = None
        self._file: IO[str] | None = None
        if run.start_step > 0 and self.path.is_file():
            self.header, rows = read_rows(self.path)
            write_rows(self.path, self.header, [row for row in rows if int(row["step"]) <= run.start_step])

    def log(self, step: int, stats: Mapping[str, float]) -> None:
        if self.header is None:
            self.header = ["step", *sorted(stats)]
            write_rows(self.path, self.header, [])
        new = set(stats) - set(self.header)
        if new:
            self.close()
            header, rows = read_rows(self.path)
            self.header = ["step", *sorted({*header[1:], *new})]
            write_rows(self.path, self.header, rows)
        if self._file is None:
            self._file = self.path.open("a", newline="", encoding="utf-8")
        csv.DictWriter(self._file, self.header, restval="").writerow({"step": step, **stats})
        self._file.flush()

    def end(self, step: int, results: Mapping[str, float]) -> None:
        if results:
            write_rows(self.results, ["step", *sorted(results)], [{"step": step, **results}])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def build_logger(options: CsvOptions, run: RunContext) -> CsvLogger:
    return CsvLogger(options, run)
