"""The README and the book, as a reader meets them.

- `test_page`: every runnable block of README.md and docs/**/*.md runs as
  written (tests/docs/runblocks.py: scratch view of the repository, one shell
  state per page, free ports, background processes stopped at the end), its
  exit status and the output it declares checked, and nothing left at the
  top of the repository.
- `test_links`: every relative link and anchor of the built book resolves
  (`NBSERVE_BOOK_DIR`, built by scripts/test-docs.sh).
"""

from __future__ import annotations

import html.parser
import os
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from conftest import ROOT, note_figure
from runblocks import Block, PageRun, become_subreaper, matches, parse

PAGES = [ROOT / "README.md"] + sorted(
    p for p in (ROOT / "docs").rglob("*.md") if p.name != "SUMMARY.md")
RUNNABLE = [p for p in PAGES if parse(p)]
BLOCKS_RUN: list[int] = []


def test_some_pages_are_runnable():
    """The marker is in use: a typo in it would silently run nothing."""
    blocks = sum(len(parse(p)) for p in PAGES)
    note_figure(f"docs: {blocks} runnable blocks in {len(RUNNABLE)} pages")
    assert blocks >= 20, blocks
    assert ROOT / "README.md" in RUNNABLE


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory) -> Path:
    """A directory holding `nbserve`: NBSERVE_BIN_RELEASE when set (faster
    training), else the debug binary (NBSERVE_BIN, else built now)."""
    from conftest import build_binary

    binary = os.environ.get("NBSERVE_BIN_RELEASE") or os.environ.get("NBSERVE_BIN")
    path = Path(binary) if binary else build_binary("debug")
    d = tmp_path_factory.mktemp("bin")
    (d / "nbserve").symlink_to(path.resolve())
    become_subreaper()
    return d


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_page(page: Path, bin_dir: Path, tmp_path: Path):
    run = PageRun(ROOT, tmp_path, bin_dir)
    failure = None
    started = time.monotonic()
    blocks = parse(page)
    try:
        for block in blocks:
            rc, out, err = run.run(block)
            shown = f"\n--- block at {block.where()}:\n{run.substitute(block.code)}" \
                    f"--- stdout:\n{out[-4000:]}--- stderr:\n{err[-4000:]}"
            if rc != block.exit:
                failure = f"exit {rc}, expected {block.exit}{shown}"
                break
            if block.output is not None and not matches(run.substitute(block.output), out):
                failure = f"output differs from the page's{shown}--- expected:\n{block.output}"
                break
    finally:
        left, killed = run.finish()
    assert failure is None, failure
    assert not left, f"{page.name} left {left} at the top of the repository"
    if killed:
        note_figure(f"docs: {page.name}: killed after ignoring SIGTERM for 10 s: {killed}")
    note_figure(f"docs: {page.relative_to(ROOT)}: {len(blocks)} blocks in {time.monotonic() - started:.1f} s")


class Anchors(html.parser.HTMLParser):
    """The ids and the links of an HTML page."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("href", "src") and value and tag in ("a", "img", "link", "script"):
                self.links.append(value)


def read(page: Path) -> Anchors:
    parser = Anchors()
    parser.feed(page.read_text(errors="replace"))
    return parser


def test_links():
    book = Path(os.environ.get("NBSERVE_BOOK_DIR", ""))
    if not (book / "index.html").is_file():
        pytest.fail("NBSERVE_BOOK_DIR names no built book: run scripts/test-docs.sh")
    pages = {p: read(p) for p in book.rglob("*.html") if p.name not in ("print.html", "404.html", "toc.html")}
    broken = []
    checked = 0
    for page, parsed in pages.items():
        for link in parsed.links:
            url = urlsplit(link)
            if url.scheme or link.startswith("//"):
                continue
            target = page if not url.path else (page.parent / unquote(url.path)).resolve()
            checked += 1
            if not target.exists():
                broken.append(f"{page.relative_to(book)}: {link} (no such file)")
                continue
            if url.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else read(target).ids
                if unquote(url.fragment) not in ids:
                    broken.append(f"{page.relative_to(book)}: {link} (no such anchor)")
    note_figure(f"docs: {checked} relative links in {len(pages)} pages")
    assert checked > 100, checked
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_matching():
    assert matches('{"label":"ham",...}', '{"label":"ham","p":1}\n')
    assert not matches('{"label":"ham"}', '{"label":"spam"}')
    assert matches("a\n...\nc", "a\nb\nb\nc")


def test_parse(tmp_path: Path):
    page = tmp_path / "p.md"
    page.write_text("text\n<!-- run: exit=5 -->\n```sh\nfalse\n```\n\n<!-- output -->\n```text\nx\n```\n"
                    "```sh\nnot run\n```\n1. item\n   <!-- run -->\n   ```sh\n   echo hi\n   ```\n")
    blocks = parse(page)
    assert [(b.code, b.exit, b.output) for b in blocks] == [("false\n", 5, "x\n"), ("echo hi\n", 0, None)]
    assert isinstance(blocks[0], Block)


def test_readme_links():
    """The README's relative links name files of the repository (GitHub
    renders them; the book's own links are checked in its HTML)."""
    import re

    links = re.findall(r"\]\(([^)\s]+)\)", (ROOT / "README.md").read_text())
    local = [link for link in links if not urlsplit(link).scheme and not link.startswith("#")]
    assert len(local) > 15, local
    missing = [link for link in local if not (ROOT / unquote(urlsplit(link).path)).exists()]
    assert not missing, f"README links to missing files: {missing}"
