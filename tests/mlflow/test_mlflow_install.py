"""scripts/install-mlflow.sh installs exactly what scripts/mlflow-requirements.txt
pins, each package with its sha256, and nothing else: the venv the MLflow
suite and the book's MLflow quick start (docs/mlflow.md) use holds every pinned package at its
pinned version, no unpinned one, and pip finds no missing or conflicting
dependency (the install is `--no-deps`, so a dependency missing from the
file would show here).
"""

import re
import subprocess
from pathlib import Path

from conftest import ROOT

REQUIREMENTS = ROOT / "scripts" / "mlflow-requirements.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_blocks() -> list[str]:
    """One string per requirement: its line and its continuation lines."""
    text = re.sub(r"\\\n", " ", REQUIREMENTS.read_text())
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def pins() -> set[str]:
    found = set()
    for block in requirement_blocks():
        m = PIN.match(block)
        assert m, f"not an exact pin: {block!r}"
        found.add(f"{canonical(m[1])}=={m[2]}")
    return found


def test_every_requirement_is_an_exact_pin_with_a_sha256():
    blocks = requirement_blocks()
    unhashed = [b for b in blocks if not (PIN.match(b) and re.search(r"--hash=sha256:[0-9a-f]{64}\b", b))]
    assert len(blocks) > 50 and unhashed == [], unhashed


def test_the_mlflow_venv_holds_exactly_the_pinned_packages(mlflow_bin: Path):
    freeze = subprocess.run([str(mlflow_bin / "python"), "-m", "pip", "freeze", "--disable-pip-version-check"],
                            capture_output=True, text=True, check=True).stdout
    installed = {f"{canonical(n)}=={v}" for n, v in (PIN.match(line).groups() for line in freeze.splitlines())}
    expected = pins()
    assert (sorted(installed - expected), sorted(expected - installed)) == ([], [])
    assert "mlflow==3.17.2" in installed


def test_pip_check_finds_every_dependency_of_the_mlflow_venv(mlflow_bin: Path):
    done = subprocess.run([str(mlflow_bin / "python"), "-m", "pip", "check", "--disable-pip-version-check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
