"""The container and CI/CD files through their own linters, and every
NBSERVE__* variable they set through the real `nbserve config`.

- `docker compose config` with the real Compose v2 binary (warnings fail too);
- JSON schemas: compose spec, GitHub workflows, dependabot;
- hadolint (Dockerfile), actionlint (+ shellcheck on run: blocks), zizmor,
  shellcheck on every script;
- every NBSERVE__* variable set in docker-compose.yml, the Dockerfile and the
  workflows is a setting the server accepts (`nbserve config` exits 0; 3 means
  unknown key or invalid value), after two controls that it does refuse;
- the binary needs no shared library the distroless cc-debian12 runtime lacks.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from conftest import ROOT
from deploy_files import (  # noqa: F401  (config_home is a fixture)
    WORKFLOWS, compose_config, compose_or_empty, config_home, deployment_variables, nb_config, tool,
)

VARIABLES, IGNORED = deployment_variables(compose_or_empty())
WF = [str(p.relative_to(ROOT)) for p in WORKFLOWS]
# What distroless cc-debian12 ships: glibc's libraries, libgcc_s and libstdc++.
RUNTIME_LIBS = {
    "libc.so.6", "libm.so.6", "libgcc_s.so.1", "libstdc++.so.6", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1",
    "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1", "libresolv.so.2",
}


def passes(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]


# ------------------------------------------------------------------ linters
def test_docker_compose_config_resolves_without_warnings(figures):
    resolved, err = compose_config()
    assert resolved is not None, err
    assert "warn" not in err.lower(), err
    figures("Compose", tool("compose-v2", "version", "--short").stdout.strip())


def test_compose_file_matches_the_compose_spec_schema():
    passes(tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"))


def test_workflows_are_present():
    assert WF, "no .github/workflows/*.yml"


def test_workflows_match_the_github_workflow_schema():
    passes(tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *WF))


def test_actionlint_with_shellcheck_on_run_blocks():
    passes(tool("actionlint", *WF))


def test_zizmor_finds_no_github_actions_security_problem():
    # Template injection, over-broad permissions, unpinned actions, credential
    # persistence, cache poisoning in release workflows, ... (offline: no API calls)
    passes(tool("zizmor", "--offline", "--no-progress", *WF))


def test_dependabot_yml_matches_the_dependabot_schema():
    passes(tool("check-jsonschema", "--builtin-schema", "vendor.dependabot", ".github/dependabot.yml"))


def test_hadolint_dockerfile():
    passes(tool("hadolint", "Dockerfile"))


def test_shellcheck_every_script():
    # -x: follow `source`d helpers (scripts/lib/), checked as part of each caller.
    scripts = sorted(str(p.relative_to(ROOT)) for pattern in ("scripts/*.sh", "scripts/lib/*.sh", "bench/*.sh")
                     for p in ROOT.glob(pattern))
    passes(tool("shellcheck", "-x", *scripts, ".ci/run"))


# ------------------------------------------------------------------ settings
def test_nbserve_config_prints_the_resolved_settings_as_json(nbserve_bin, config_home):
    done = nb_config(nbserve_bin, config_home)
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), dict)


# Controls: without these the variable checks below would prove nothing.
@pytest.mark.parametrize("name, value", [
    ("NBSERVE__SERVER__NO_SUCH_SETTING", "1"),
    ("NBSERVE__SERVER__PORT", "not-a-port"),
], ids=["unknown key", "invalid value"])
def test_nbserve_config_rejects_with_exit_3(nbserve_bin, config_home, name, value):
    assert nb_config(nbserve_bin, config_home, {name: value}).returncode == 3


def test_the_deployment_files_set_nbserve_variables():
    assert VARIABLES, "no NBSERVE__* variable found: the extraction is broken"


def test_no_container_gets_a_one_underscore_nbserve_variable():
    # NBSERVE_X reaches the container but is not a setting: NBSERVE__ takes two underscores.
    assert not IGNORED, IGNORED


@pytest.mark.parametrize("name, value", list(VARIABLES), ids=[f"{n}={v}" for n, v in VARIABLES])
def test_setting_is_known(nbserve_bin, config_home, name, value):
    done = nb_config(nbserve_bin, config_home, {name: value})
    where = ", ".join(VARIABLES[(name, value)])
    assert done.returncode == 0, f"{name}={value} ({where}): exit {done.returncode} " \
                                 f"(3: unknown key or invalid value)\n{done.stderr}"


# ------------------------------------------------------------------- binary
def test_binary_needs_only_libraries_distroless_cc_debian12_has(nbserve_bin, figures):
    assert shutil.which("readelf"), "readelf not found: install binutils (apt-get install binutils)"
    header = subprocess.run(["readelf", "-h", str(nbserve_bin)], capture_output=True, text=True)
    assert header.returncode == 0, f"{nbserve_bin} is not an ELF executable"
    dynamic = subprocess.run(["readelf", "-d", str(nbserve_bin)], capture_output=True, text=True, check=True).stdout
    needed = sorted(set(re.findall(r"Shared library: \[(.*)\]", dynamic)))
    versions = subprocess.run(["readelf", "-V", str(nbserve_bin)], capture_output=True, text=True).stdout
    glibc = sorted(set(re.findall(r"GLIBC_([0-9.]+)", versions)), key=lambda v: [int(x) for x in v.split(".")])
    figures("binary's shared libraries", " ".join(needed))
    figures("highest glibc symbol version needed",
            f"{glibc[-1] if glibc else 'none'} (bookworm/distroless has 2.36; the image is built on bookworm)")
    assert not set(needed) - RUNTIME_LIBS, f"not in the runtime image: {sorted(set(needed) - RUNTIME_LIBS)}"
