"""The documentation site builds: MkDocs renders every page of docs/, with no broken link.

CI runs the README's test command, so building the site here is what builds it
in CI. ``mkdocs.yml`` sets ``strict`` and turns every link check into a warning:
a link to a missing page, file or anchor, or a page left out of the nav, fails
the build. ``make docs`` runs the same build into ``site/``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CONFIG = ROOT / "mkdocs.yml"
PAGES = sorted(str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md"))


def html_path(site: Path, page: str) -> Path:
    """Where MkDocs writes ``page`` with directory URLs: ``a.md`` -> ``a/index.html``."""
    stem = page.removesuffix(".md")
    return site / ("index.html" if stem == "index" else f"{stem}/index.html")


def nav_pages(nav: Any) -> list[str]:
    """Every page named in a nav tree: lists of pages, {title: page} and {title: [...]}."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    raise AssertionError(f"unexpected nav entry {nav!r}")


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The site built with ``mkdocs build --strict`` into a temporary directory, and its log."""
    site = tmp_path_factory.mktemp("docs-site") / "site"
    env = {k: v for k, v in os.environ.items() if k != "GANFORGE_PLUGINS"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(CONFIG), "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    log = done.stdout + done.stderr
    if "No module named mkdocs" in log:
        pytest.fail("mkdocs is not installed: pip install -e '.[test]' (make test does)")
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    return site, log


def test_site_builds_with_no_warning(build: tuple[Path, str]) -> None:
    _, log = build
    assert not re.search(r"^WARNING", log, re.MULTILINE), log


def test_config_makes_every_link_problem_an_error() -> None:
    config = CONFIG.read_text()
    assert re.search(r"^strict: true$", config, re.MULTILINE)
    for check in ("omitted_files", "absolute_links", "unrecognized_links", "anchors"):
        assert re.search(rf"^  {check}: warn$", config, re.MULTILINE), f"mkdocs.yml: validation {check} is not checked"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_is_rendered_with_its_title(build: tuple[Path, str], page: str) -> None:
    site, _ = build
    html = html_path(site, page)
    assert html.is_file(), f"docs/{page} was not rendered to {html.relative_to(site)}"
    title = re.search(r"^# (.+)$", (DOCS / page).read_text(), re.MULTILINE)
    assert title, f"docs/{page} has no '# title' line"
    text = re.sub(r"<[^>]+>", "", html.read_text())
    assert re.sub(r"`", "", title[1]) in text


def test_nav_lists_every_page_once() -> None:
    import yaml  # a dependency of mkdocs

    nav = nav_pages(yaml.safe_load(CONFIG.read_text())["nav"])
    assert sorted(nav) == sorted(set(nav)), (
        f"pages listed twice in the nav: {sorted(p for p in nav if nav.count(p) > 1)}"
    )
    assert set(nav) == set(PAGES), f"add to the nav in mkdocs.yml: {sorted(set(PAGES) - set(nav))}; " + (
        f"listed but missing: {sorted(set(nav) - set(PAGES))}"
    )


def test_make_docs_builds_the_site_strictly() -> None:
    target = re.search(r"^docs:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert target, "the Makefile has no docs target"
    assert "mkdocs build --strict" in target[1]
