"""What tests/deploy/ reads out of the deployment files, and the tools it runs.

No Docker engine: the linters and the Compose v2 binary come from
scripts/install-tools.sh (`tools_bin`), YAML is read with the ruamel.yaml of
that venv (`load_yaml`), and what the files ask of nbserve is put to the real
`nbserve config`. The lists the tests are parametrized with (the NBSERVE__*
variables set, the compose bind mounts, the files the image build needs) are
read when the tests are collected; reading them is cheap and needs no binary.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, installed

WORKFLOWS = sorted(p for ext in ("yml", "yaml") for p in (ROOT / ".github" / "workflows").glob(f"*.{ext}"))
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"


@functools.cache
def tools_bin() -> Path:
    """The venv bin directory of the linters (`NBSERVE_TOOLS_BIN`, else
    scripts/install-tools.sh installs them)."""
    return installed("install-tools.sh", "NBSERVE_TOOLS_BIN")


def tool(name: str, *args: str, **kw) -> subprocess.CompletedProcess:
    """Runs a tool of the tools venv from the repository root, output kept;
    the venv's bin first on PATH (actionlint finds shellcheck there)."""
    env = dict(os.environ, PATH=f"{tools_bin()}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([str(tools_bin() / name), *args], cwd=ROOT, env=env, capture_output=True, text=True, **kw)


@functools.cache
def compose_config() -> tuple[dict | None, str]:
    """`docker compose config` of docker-compose.yml with every profile (the
    optional mlflow and retrain services too): (resolved JSON, stderr); the
    JSON is None when Compose refused the file."""
    done = tool("compose-v2", "-f", str(COMPOSE_FILE), "--profile", "*", "config", "--format", "json")
    if done.returncode != 0:
        return None, done.stderr
    return json.loads(done.stdout), done.stderr


def compose_or_empty() -> dict:
    """The resolved compose file for collecting parameters; {} if Compose
    refused it (test_docker_compose_config fails then, saying why)."""
    try:
        return compose_config()[0] or {}
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}


def load_yaml(path: Path):
    """A YAML file through the tools venv's ruamel.yaml (safe loader)."""
    script = ("import json, sys\nfrom ruamel.yaml import YAML\n"
              "json.dump(YAML(typ='safe').load(open(sys.argv[1])), sys.stdout)")
    done = subprocess.run([str(tools_bin() / "python"), "-c", script, str(path)], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


# ------------------------------------------------------- NBSERVE__ variables
def plausible(name: str) -> str:
    """A valid value for a setting whose value the files leave open
    (`${...}`, `${{ ... }}`, passed through from the host)."""
    n = name.upper()
    table = [
        ("HOST", "0.0.0.0"), ("PORT", "8080"), ("MIN_F1_MACRO", "0.9"),
        ("LOG__FORMAT", "json"), ("LOG__LEVEL", "info"), ("TOKEN", "example-admin-token"),
        ("MODEL__PATH", "models/spam-nb.json"), ("MODEL__DIR", "models"),
        ("HOLDOUT_PATH", "tests/data/sample.csv"), ("LOG_PATH", "/tmp/feedback.jsonl"),
    ]
    for suffix, value in table:
        if n.endswith(suffix):
            return value
    return "1000"  # the remaining settings are positive integers


def deployment_variables(compose: dict) -> tuple[dict[tuple[str, str], list[str]], dict[str, list[str]]]:
    """Every NBSERVE__* variable docker-compose.yml (resolved), the Dockerfile
    and the workflows set: {(name, value): [sources]}; and the NBSERVE_X
    (one underscore) handed to a container, which the server never reads:
    {name: [sources]}."""
    found: dict[tuple[str, str], list[str]] = {}
    ignored: dict[str, list[str]] = {}

    def add(name, value, source):
        if value is None or value == "" or "$" in value:
            value = plausible(name)
        found.setdefault((name, value), []).append(source)

    for svc_name, svc in (compose.get("services") or {}).items():
        for k, v in (svc.get("environment") or {}).items():
            if k.startswith("NBSERVE__"):
                add(k, v, f"docker-compose.yml:{svc_name}")
            elif k.startswith("NBSERVE_"):
                ignored.setdefault(k, []).append(f"docker-compose.yml:{svc_name}")

    text = DOCKERFILE.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if re.match(r"\s*(ENV|ARG)\s", line, re.I):
            for m in re.finditer(r"(NBSERVE__[A-Z0-9_]+)(?:=|\s+)(\"[^\"]*\"|\S+)?", line):
                add(m.group(1), (m.group(2) or "").strip('"'), "Dockerfile")
        if re.match(r"\s*ENV\s", line, re.I):
            for m in re.finditer(r"\b(NBSERVE_[A-Z0-9][A-Z0-9_]*)", line):
                ignored.setdefault(m.group(1), []).append("Dockerfile")

    for wf in WORKFLOWS:
        rel = str(wf.relative_to(ROOT))
        body = wf.read_text()
        for m in re.finditer(r"(NBSERVE__[A-Z0-9_]+)\s*(?:=|:[ \t]*)([^\s\"']*)", body):
            add(m.group(1), m.group(2), rel)
        # `docker run -e NBSERVE_X=...`: reaches the container but not the settings.
        for m in re.finditer(r"(?:-e|--env)[ =]\"?(NBSERVE_[A-Z0-9][A-Z0-9_]*)", body):
            ignored.setdefault(m.group(1), []).append(rel)
    found = {key: sorted(set(src)) for key, src in sorted(found.items())}
    return found, {name: sorted(set(src)) for name, src in sorted(ignored.items())}


# ------------------------------------------------------------------ nbserve
def nb_config(binary: Path, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`nbserve config` in a clean environment (the caller's NBSERVE__*
    variables must not leak in) plus `env`."""
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(home), **(env or {})}
    return subprocess.run([str(binary), "config"], env=clean, capture_output=True, text=True)


def setting(cfg: dict, dotted: str):
    if dotted in cfg:
        return cfg[dotted]
    d = cfg
    for part in dotted.split("."):
        d = d[part]
    return d


@pytest.fixture(scope="session")
def config_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("deploy-home")


@pytest.fixture(scope="session")
def defaults(nbserve_bin, config_home) -> dict:
    """The resolved default settings, `nbserve config` with no variable set."""
    done = nb_config(nbserve_bin, config_home)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="session")
def compose() -> dict:
    """The resolved compose file (every profile)."""
    resolved, err = compose_config()
    assert resolved is not None, f"docker compose config failed:\n{err}"
    return resolved
