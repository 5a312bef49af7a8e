"""The Docker build context: everything cargo needs (manifest, lock file,
every declared target: cargo refuses to build if one is missing) and the
default model must survive .dockerignore, or the image build fails only on a
machine with Docker.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess

import pytest

from conftest import ROOT
from deploy_files import config_home, defaults, setting  # noqa: F401  (fixtures)


def to_regex(pattern: str) -> re.Pattern:
    """Docker's .dockerignore: root-anchored, `*` and `?` stay within one path
    element, `**` spans any number of them; a match on a directory excludes
    everything under it."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out += "/?"
                i += 1
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "(/.*)?$")


RULES = []
for _line in (ROOT / ".dockerignore").read_text().splitlines():
    _line = _line.strip()
    if _line and not _line.startswith("#"):
        RULES.append((_line.startswith("!"), to_regex(os.path.normpath(_line.lstrip("!").strip()).lstrip("/")), _line))


def excluded(path: str) -> tuple[bool, str]:
    """Whether .dockerignore leaves `path` out, and the line that decided."""
    verdict, why = False, ""
    for neg, rx, line in RULES:
        if rx.match(path):
            verdict, why = (not neg), line
    return verdict, why


def cargo_needs() -> list[str]:
    """Cargo.toml, Cargo.lock and the source of every declared target."""
    meta = subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"], cwd=ROOT,
                          capture_output=True, text=True)
    if meta.returncode != 0:
        return [f"(cargo metadata failed: {meta.stderr.strip()[-300:]})"]
    required = {"Cargo.toml", "Cargo.lock"}
    for pkg in json.loads(meta.stdout)["packages"]:
        for target in pkg["targets"]:
            required.add(os.path.relpath(target["src_path"], ROOT))
    return sorted(required)


@functools.cache
def repo_files() -> set[str]:
    """The files git sees (tracked or not ignored), else every file."""
    done = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode == 0:
        return {line for line in done.stdout.splitlines() if line}
    return {str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
            if p.is_file() and not str(p.relative_to(ROOT)).startswith((".git/", "target/"))}


def kept(path: str) -> None:
    ex, why = excluded(path)
    assert path in repo_files() or (ROOT / path).exists(), f"{path} is not in the repo"
    assert not ex, f"{path} is excluded by .dockerignore line '{why}'"


@pytest.mark.parametrize("path", cargo_needs())
def test_build_context_keeps_what_cargo_needs(path):
    kept(path)


def test_build_context_keeps_the_default_model(defaults, figures):
    kept(os.path.normpath(str(setting(defaults, "model.path"))))
    context = [f for f in repo_files() if not excluded(f)[0]]
    size = sum((ROOT / f).stat().st_size for f in context if (ROOT / f).is_file())
    figures("build context", f"~{len(context)} files, {size / 1e6:.1f} MB (git-visible files after .dockerignore)")
