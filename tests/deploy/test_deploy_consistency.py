"""The Dockerfile, docker-compose.yml and the workflows agree with each other
and with `nbserve config`'s defaults: ports and model paths; compose bind
mounts and the files they are expected to hold exist (every profile); the
retrain service writes the ./models nbserve serves from and reads the
feedback log nbserve writes (same volume and path); prometheus.yml's rule
files and scrape target, Grafana's provisioning and home dashboard; the gate
in CI runs on the default model.
"""

from __future__ import annotations

import glob
import json
import os
import posixpath
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import ROOT
from deploy_files import (  # noqa: F401  (compose, config_home, defaults are fixtures)
    DOCKERFILE, WORKFLOWS, compose, compose_or_empty, config_home, defaults, load_yaml, setting,
)


# ------------------------------------------------------------ the Dockerfile
def dockerfile_lines() -> list[str]:
    """Instructions (continuations joined), comments and blank lines dropped."""
    out = []
    for raw in DOCKERFILE.read_text().replace("\\\n", " ").splitlines():
        s = raw.strip()
        if s and not s.startswith("#"):
            out.append(s)
    return out


def final_stage(name: str) -> list[str]:
    """The arguments of every NAME instruction of the last stage."""
    lines = dockerfile_lines()
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return [line.split(None, 1)[1] if " " in line else "" for line in lines[last_from:]
            if line.split(None, 1)[0].upper() == name]


WORKDIR = (final_stage("WORKDIR") or ["/"])[-1]


@pytest.fixture(scope="module")
def port(defaults) -> int:
    return int(setting(defaults, "server.port"))


@pytest.fixture(scope="module")
def model_path(defaults, figures) -> str:
    figures("nbserve config defaults", f"server.port={setting(defaults, 'server.port')} "
                                       f"model.path={setting(defaults, 'model.path')} "
                                       f"model.dir={setting(defaults, 'model.dir')}")
    return str(setting(defaults, "model.path"))


@pytest.fixture(scope="module")
def model_dir(defaults) -> str:
    return str(setting(defaults, "model.dir"))


def test_dockerfile_exposes_server_port(port):
    exposed = [int(p.split("/")[0]) for e in final_stage("EXPOSE") for p in e.split()]
    assert port in exposed, f"EXPOSE {exposed}, server.port {port}"


def test_dockerfile_healthcheck_url_is_on_server_port(port):
    hc_ports = [urlparse(url).port or 80 for h in final_stage("HEALTHCHECK")
                for url in re.findall(r"https?://[^\s\"',\]]+", h)]
    assert hc_ports, "no HEALTHCHECK with a URL"
    assert set(hc_ports) == {port}, f"HEALTHCHECK URL ports {hc_ports}, server.port {port}"


def test_model_path_lies_inside_model_dir(model_path, model_dir):
    assert posixpath.normpath(model_path).startswith(posixpath.normpath(model_dir) + "/"), (model_path, model_dir)


def test_dockerfile_puts_the_repos_models_at_workdir_plus_model_dir(model_dir):
    image_model_dir = posixpath.normpath(posixpath.join(WORKDIR, model_dir))
    copies = re.search(r"(^|\s)\.?/?models/?\s+\S*" + re.escape(image_model_dir) + r"/?(\s|$)",
                       "\n".join(dockerfile_lines()), re.M)
    assert copies, f"nothing copies models/ to {image_model_dir} (WORKDIR {WORKDIR} + model.dir {model_dir})"


def test_default_model_exists_in_the_repo(model_path):
    # The image build copies models/: train or restore the artifact.
    assert (ROOT / model_path).is_file(), f"{model_path} (-> {posixpath.join(WORKDIR, model_path)} in the image)"


def test_dockerfile_sets_server_host_to_all_interfaces():
    # Reachable from outside the container.
    envs = dict(re.findall(r"(NBSERVE__[A-Z0-9_]+)=(\S+)", " ".join(final_stage("ENV"))))
    assert envs.get("NBSERVE__SERVER__HOST") == "0.0.0.0", f"ENV has {envs}"


def test_dockerfile_final_stage_has_oci_labels_source_version_revision():
    labels = " ".join(final_stage("LABEL"))
    missing = [k for k in ("source", "version", "revision") if f"org.opencontainers.image.{k}=" not in labels]
    assert not missing, f"missing {missing}"


def test_dockerfile_runs_as_a_non_root_user():
    user = (final_stage("USER") or ["0"])[-1].split(":")[0]
    assert user not in ("0", "root"), user


# ------------------------------------------------------------------ compose
def binds(svc: dict) -> list[tuple[str, str]]:
    return [(v["source"], v["target"]) for v in svc.get("volumes") or [] if v.get("type") == "bind"]


def to_host(svc: dict, cpath: str) -> str | None:
    """The host path of a container path on one of the service's bind mounts."""
    for src, tgt in sorted(binds(svc), key=lambda b: -len(b[1])):
        if cpath == tgt:
            return src
        if cpath.startswith(tgt.rstrip("/") + "/"):
            return os.path.join(src, cpath[len(tgt.rstrip("/")) + 1:])
    return None


def mount_of(svc: dict, cpath: str):
    """(kind, source, path below the mount, mount target, read_only) of the
    service's mount holding cpath, or None."""
    best = None
    for v in svc.get("volumes") or []:
        tgt = v["target"].rstrip("/")
        if cpath == tgt or cpath.startswith(tgt + "/"):
            if best is None or len(tgt) > len(best[3]):
                best = (v.get("type"), v.get("source"), cpath[len(tgt):].lstrip("/"), tgt, v.get("read_only", False))
    return best


BINDS = [(name, src, tgt) for name, svc in (compose_or_empty().get("services") or {}).items()
         for src, tgt in binds(svc)]


@pytest.mark.parametrize("service, source, target", BINDS,
                         ids=[f"{n}:{os.path.relpath(s, ROOT)}" for n, s, _ in BINDS])
def test_compose_bind_source_exists(service, source, target):
    assert os.path.exists(source), f"compose {service}: {source} (-> {target})"


@pytest.fixture(scope="module")
def nbserve_svc(compose) -> dict:
    return compose["services"].get("nbserve", {})


@pytest.fixture(scope="module")
def nb_env(nbserve_svc) -> dict:
    return nbserve_svc.get("environment") or {}


@pytest.fixture(scope="module")
def nb_port(nb_env, port) -> int:
    return int(nb_env.get("NBSERVE__SERVER__PORT") or port)


@pytest.fixture(scope="module")
def nb_model(nb_env, model_path) -> str:
    return posixpath.join(WORKDIR, nb_env.get("NBSERVE__MODEL__PATH") or model_path)


def test_compose_nbserve_port_is_the_server_port_default(nb_port, port):
    assert nb_port == port


def test_compose_nbserve_publishes_its_port(nbserve_svc, nb_port):
    targets = [int(p["target"]) for p in nbserve_svc.get("ports") or []]
    assert nb_port in targets, f"published container ports {targets}, server port {nb_port}"


def test_compose_nbserve_healthcheck_is_nbserve_healthcheck_on_its_port(nbserve_svc, nb_port):
    test = " ".join(nbserve_svc.get("healthcheck", {}).get("test") or [])
    urls = re.findall(r"https?://\S+", test)
    assert "healthcheck" in test and urls and all((urlparse(u).port or 80) == nb_port for u in urls), test


def test_compose_nbserve_model_comes_from_a_bind_mount_of_models(nbserve_svc, nb_model, model_path):
    host_model = to_host(nbserve_svc, nb_model)
    assert host_model is not None and os.path.normpath(host_model) == str(ROOT / model_path), \
        f"{nb_model} maps to {host_model}"


def test_compose_nbserve_root_filesystem_is_read_only(nbserve_svc):
    assert nbserve_svc.get("read_only") is True


# ---------------------------------------------- retrain (profile): same model, same log
@pytest.fixture(scope="module")
def retrain_svc(compose) -> dict:
    svc = compose["services"].get("retrain")
    assert svc is not None, "compose has no retrain service (profile retrain)"
    return svc


@pytest.fixture(scope="module")
def rt_model(retrain_svc, model_path) -> str:
    return posixpath.join(WORKDIR, (retrain_svc.get("environment") or {}).get("NBSERVE__MODEL__PATH") or model_path)


def test_compose_retrain_model_path_is_nbserves(rt_model, nb_model):
    assert rt_model == nb_model


def test_compose_retrain_writes_the_models_mount_nbserve_reads(retrain_svc, nbserve_svc, rt_model, nb_model):
    m_rt, m_nb = mount_of(retrain_svc, rt_model), mount_of(nbserve_svc, nb_model)
    assert m_rt and m_nb and m_rt[:3] == m_nb[:3] and not m_rt[4], f"retrain {m_rt}, nbserve {m_nb}"


def test_compose_retrain_reads_the_feedback_log_nbserve_writes(retrain_svc, nbserve_svc, nb_env):
    logs = [a.split("=", 1)[1] for a in retrain_svc.get("command") or [] if a.startswith("--feedback-log=")]
    nb_log = nb_env.get("NBSERVE__FEEDBACK__LOG_PATH")
    l_nb = mount_of(nbserve_svc, posixpath.join(WORKDIR, nb_log)) if nb_log else None
    l_rt = [mount_of(retrain_svc, posixpath.join(WORKDIR, log)) for log in logs]
    assert l_nb and l_nb[0] == "volume" and any(m and m[:3] == l_nb[:3] for m in l_rt), \
        f"retrain {logs} on {l_rt}, nbserve {nb_log} on {l_nb}"


def test_compose_retrain_root_filesystem_is_read_only(retrain_svc):
    assert retrain_svc.get("read_only") is True


def test_compose_retrain_command_is_retrain_with_data_and_holdout(retrain_svc):
    cmd = retrain_svc.get("command") or []
    assert cmd[:1] == ["retrain"] and any(a.startswith("--data") for a in cmd) \
        and any(a.startswith("--holdout") for a in cmd), " ".join(cmd)


# -------------------------------------------------------------- prometheus
@pytest.fixture(scope="module")
def prometheus_config(compose):
    """(service, config path in the container, parsed config)."""
    prom = compose["services"].get("prometheus", {})
    m = re.search(r"--config\.file=(\S+)", " ".join(prom.get("command") or []))
    cfg_c = m.group(1) if m else "/etc/prometheus/prometheus.yml"
    cfg_h = to_host(prom, cfg_c)
    assert cfg_h and os.path.isfile(cfg_h), f"prometheus config {cfg_c} is not mounted from a file (host {cfg_h})"
    return prom, cfg_c, load_yaml(Path(cfg_h)) or {}


def test_prometheus_rule_files_are_mounted(prometheus_config):
    prom, cfg_c, pcfg = prometheus_config
    rule_files = pcfg.get("rule_files") or []
    assert rule_files, "prometheus.yml loads no rule_files"
    for rf in rule_files:
        rc = posixpath.join(posixpath.dirname(cfg_c), rf)
        rh = to_host(prom, rc)
        assert rh and glob.glob(rh), f"rule_files {rf} -> {rc} is not mounted from the repo ({rh})"


def test_prometheus_scrapes_nbserve(prometheus_config, nb_port):
    want = f"nbserve:{nb_port}"
    jobs = [j.get("job_name") for j in prometheus_config[2].get("scrape_configs") or []
            if any(want in (sc.get("targets") or []) for sc in j.get("static_configs") or [])]
    assert jobs, f"no scrape job targets {want}"


# ------------------------------------------------------------------ grafana
@pytest.fixture(scope="module")
def grafana(compose) -> dict:
    return compose["services"].get("grafana", {})


@pytest.fixture(scope="module")
def provisioning(grafana) -> str:
    prov = to_host(grafana, "/etc/grafana/provisioning")
    assert prov and os.path.isdir(prov), f"grafana provisioning is not mounted from a directory (host {prov})"
    return prov


@pytest.fixture(scope="module")
def providers(provisioning) -> list[tuple[str, str]]:
    """(provisioning file, dashboards path in the container) of every dashboard provider."""
    out = []
    for f in sorted(glob.glob(os.path.join(provisioning, "dashboards", "*.y*ml"))):
        for p in (load_yaml(Path(f)) or {}).get("providers") or []:
            out.append((os.path.relpath(f, ROOT), (p.get("options") or {}).get("path")))
    return out


@pytest.fixture(scope="module")
def home_dashboard(grafana) -> str | None:
    return (grafana.get("environment") or {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")


def test_grafana_home_dashboard_is_a_mounted_dashboard_json(grafana, home_dashboard):
    home_h = to_host(grafana, home_dashboard) if home_dashboard else None
    assert home_h and os.path.isfile(home_h), f"{home_dashboard} maps to {home_h}"
    assert json.loads(Path(home_h).read_text()).get("title"), f"{home_h} has no title"


def test_grafana_has_dashboard_providers(providers):
    assert providers


def test_grafana_providers_paths_are_mounted_dirs_with_dashboards(grafana, providers):
    for f, path in providers:
        h = to_host(grafana, path) if path else None
        assert h and os.path.isdir(h) and glob.glob(os.path.join(h, "**", "*.json"), recursive=True), \
            f"provider {f}: path {path} maps to {h}"


def test_grafana_home_dashboard_lies_under_a_provisioned_path(home_dashboard, providers):
    assert home_dashboard and any(p and home_dashboard.startswith(p.rstrip("/") + "/") for _, p in providers), \
        (home_dashboard, providers)


def test_grafana_prometheus_datasource_is_the_compose_service(provisioning):
    urls = [d.get("url") for f in sorted(glob.glob(os.path.join(provisioning, "datasources", "*.y*ml")))
            for d in (load_yaml(Path(f)) or {}).get("datasources") or [] if d.get("type") == "prometheus"]
    assert any(u and urlparse(u).hostname == "prometheus" and (urlparse(u).port or 80) == 9090 for u in urls), \
        f"Prometheus datasources {urls}, want http://prometheus:9090"


# ---------------------------------------------------------------- workflows
def test_workflows_run_the_gate_on_the_default_model(model_path):
    models = {m for wf in WORKFLOWS for m in re.findall(r"--model\s+(\S+)", wf.read_text())}
    assert models and models == {model_path}, f"workflows run the gate on {sorted(models)}, default {model_path}"


# ------------------------------------------------------------ the prefetch
def test_prefetch_covers_every_install_the_suites_make():
    """scripts/test.sh overlaps the suites' installs with compiling by running
    scripts/prefetch.sh first; an installer or pinned venv a suite uses but the
    prefetch forgets is not wrong (the suite installs it), only slow on a cold
    cache, so this is where it is caught."""
    prefetch = (ROOT / "scripts" / "prefetch.sh").read_text()
    steps = [line.split(None, 1)[1] for line in prefetch.splitlines() if line.startswith("step ")]
    step_text = "\n".join(steps)
    suites = re.findall(r"^suite \S+ (scripts/\S+)", (ROOT / "scripts" / "test.sh").read_text(), re.M)
    assert len(suites) >= 10, suites
    wanted = set()
    sources = [ROOT / s for s in suites] + [ROOT / "scripts" / "lib" / "pytest.sh"]
    for path in sources:
        code = "\n".join(l for l in path.read_text().splitlines() if not l.lstrip().startswith("#"))
        wanted |= set(re.findall(r"scripts/(?:install-[a-z0-9-]+|setup-python|fetch-data)\.sh", code))
        wanted |= {f"pinned_venv {name} {req}" for name, req in re.findall(r"pinned_venv (\S+) ([^\s)\"]+)", code)}
        if "install_podman" in code:
            wanted.add("install_podman")
    missing = sorted(w for w in wanted if w not in step_text)
    assert not missing, f"scripts/prefetch.sh does not prefetch: {missing}"
