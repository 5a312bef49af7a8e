"""Offline checks of deploy/kubernetes/ (the kustomize base, every overlay and
the KServe example):

- `kubectl kustomize DIR` renders each of them (kubectl's built-in kustomize
  v5, scripts/install-kubectl.sh);
- kubernetes-validate --strict (pinned and hash-checked in
  scripts/check-kubernetes-requirements.txt, schemas bundled, Kubernetes 1.32)
  accepts every built-in kind; custom resources (KServe's InferenceService)
  have no bundled schema and are left out, said so in the figures; a control
  (an unknown field in a Deployment) must be rejected;
- every NBSERVE__* variable a container gets (ConfigMap envFrom + env, also
  configMapKeyRef and secretKeyRef) is accepted by `nbserve config` with that
  exact environment (the token files are replaced by temporary ones and a
  secretKeyRef value by a stand-in: the Secrets do not exist here);
- probes: liveness on /health (or /v2/health/live), readiness on /ready (or
  /v2/health/ready), a startup probe, all on the port the settings bind;
  terminationGracePeriodSeconds > drain_delay_secs + shutdown_timeout_secs;
  every container (init containers too) runs as non-root with a read-only
  root filesystem, no privilege escalation, all capabilities dropped, the
  RuntimeDefault seccomp profile and cpu/memory requests and limits;
- the retrain CronJob (components/retrain, in overlays/production): Forbid
  concurrency, a rejection (exit 5) fails the Job without retries, and it
  writes model.path on the same PVC the replicas serve it from;
- check_kubernetes.py: model delivery, secrets, NetworkPolicies, service
  account tokens and pinned images.

The renderings are made when the tests are collected: the containers they
hold are the tests' parameters.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import check_kubernetes as ck
from conftest import ROOT

K8S_VERSION = "1.32.0"
BUILTIN = ("v1", "apps/v1", "autoscaling/v2", "policy/v1", "batch/v1", "networking.k8s.io/v1")
KUBE = ROOT / "deploy" / "kubernetes"
DIRS = [KUBE / "base"] + [d for d in [*sorted((KUBE / "overlays").glob("*")), KUBE / "kserve"]
                          if (d / "kustomization.yaml").is_file()]


@functools.cache
def kubectl() -> str:
    """A kubectl with kustomize v5 (`NBSERVE_KUBECTL`, else
    scripts/install-kubectl.sh finds or installs one)."""
    given = os.environ.get("NBSERVE_KUBECTL")
    if given:
        return given
    out = subprocess.run([str(ROOT / "scripts" / "install-kubectl.sh")], check=True, stdout=subprocess.PIPE,
                         text=True)
    return out.stdout.strip().splitlines()[-1]


def render(d: Path) -> tuple[list[dict], str]:
    """`kubectl kustomize d`: (documents, error output)."""
    try:
        done = subprocess.run([kubectl(), "kustomize", str(d)], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as err:
        return [], str(err)
    if done.returncode != 0 or not done.stdout.strip():
        return [], done.stderr or f"exit {done.returncode}, nothing rendered"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc], ""


def name(d: Path) -> str:
    return str(d.relative_to(ROOT))


RENDERED = {name(d): render(d) for d in DIRS}
DOCS = {n: docs for n, (docs, _) in RENDERED.items()}


def pod_of(obj: dict) -> dict:
    return {"Deployment": lambda o: o["spec"]["template"]["spec"],
            "InferenceService": lambda o: o["spec"]["predictor"],
            "CronJob": lambda o: o["spec"]["jobTemplate"]["spec"]["template"]["spec"]}[obj["kind"]](obj)


def collect():
    """Parameters: every container of a pod-making object (rendering, object,
    container), with `nbserve` settings; and the workloads."""
    containers, inits, workloads = [], [], []
    for n, docs in DOCS.items():
        for obj, pod, labels in ck.workloads(docs):
            workloads.append(pytest.param(n, obj, pod, labels, id=f"{n}:{ck.what(obj)}"))
            for c in pod.get("containers", []):
                containers.append(pytest.param(n, obj, c, id=f"{n}:{ck.what(obj, c)}"))
            for ic in pod.get("initContainers", []):
                inits.append(pytest.param(n, obj, ic, id=f"{n}:{ck.what(obj)}: init container {ic['name']}"))
    return containers, inits, workloads


CONTAINERS, INITS, WORKLOADS = collect()
SERVING = [p for p in CONTAINERS if p.values[1]["kind"] != "CronJob"]
DEPLOYMENTS = [p for p in SERVING if p.values[1]["kind"] == "Deployment"]
CRONJOBS = [p for p in CONTAINERS if p.values[1]["kind"] == "CronJob"]


# ------------------------------------------------------------------ render
@pytest.mark.parametrize("rendering", RENDERED)
def test_kubectl_kustomize_renders(rendering):
    docs, err = RENDERED[rendering]
    assert docs, err


# ---------------------------------------------------------------- schemas
def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet",
                           "-k", K8S_VERSION, str(path)], capture_output=True, text=True)


WITH_BUILTIN = [n for n, docs in DOCS.items() if any(d.get("apiVersion") in BUILTIN for d in docs)]


@pytest.mark.parametrize("rendering", WITH_BUILTIN)
def test_kubernetes_validate_strict_accepts_every_builtin_kind(rendering, tmp_path, figures):
    docs = DOCS[rendering]
    keep = [d for d in docs if d.get("apiVersion") in BUILTIN]
    for d in docs:
        if d not in keep:
            figures(f"kubernetes-validate {rendering}", f"{d['kind']} ({d['apiVersion']}) left out: a custom "
                                                       "resource, kubernetes-validate bundles no schema for it")
    path = tmp_path / "builtin.yaml"
    path.write_text(yaml.safe_dump_all(keep))
    done = validate(path)
    assert done.returncode == 0, done.stdout + done.stderr
    figures(f"kubernetes-validate --strict ({K8S_VERSION}) {rendering}", ", ".join(d["kind"] for d in keep))


def test_kubernetes_validate_strict_rejects_an_unknown_field(tmp_path):
    # Control: an unknown field must be rejected, or --strict proves nothing.
    deployment = next(d for d in DOCS[name(KUBE / "base")] if d["kind"] == "Deployment")
    deployment = json.loads(json.dumps(deployment))
    deployment["spec"]["template"]["spec"]["containers"][0]["noSuchField"] = True
    path = tmp_path / "control.yaml"
    path.write_text(yaml.safe_dump(deployment))
    assert validate(path).returncode != 0


# --------------------------------------------------------------- settings
@pytest.fixture(scope="session")
def tokens(tmp_path_factory) -> dict[str, str]:
    """Two different tokens, readable by their owner only (as a token file should be)."""
    work = tmp_path_factory.mktemp("tokens")
    out = {}
    for key in ("admin", "feedback"):
        path = work / f"{key}-token"
        path.write_text(f"{key}-token-for-check-kubernetes\n")
        path.chmod(0o600)
        out[f"NBSERVE__{key.upper()}__TOKEN_FILE"] = str(path)
    return out


def nb_config(binary: Path, home: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`nbserve config` with exactly `env` (and a PATH and HOME)."""
    return subprocess.run([str(binary), "config"], env={"PATH": "/usr/bin:/bin", "HOME": str(home), **env},
                          capture_output=True, text=True)


def container_env(rendering: str, c: dict) -> tuple[dict[str, str], list[str]]:
    """The container's NBSERVE__* environment as the pod would get it (a
    Secret's value a stand-in of a valid length: the Secrets do not exist
    here), and the configMapKeyRefs to keys that do not exist."""
    missing: list[str] = []
    env = ck.resolve_env(c, DOCS[rendering], lambda name, key: f"stand-in-{name}-{key}", missing)
    return {k: v for k, v in env.items() if k.startswith("NBSERVE__")}, missing


@pytest.fixture(scope="session")
def settings_of(nbserve_bin, tokens, tmp_path_factory):
    """settings_of(rendering, container): `nbserve config` with the
    container's environment; the test fails if it is refused."""
    home = tmp_path_factory.mktemp("home")
    cache: dict[tuple[str, str], subprocess.CompletedProcess] = {}

    def get(rendering: str, c: dict, obj: dict) -> dict:
        key = (rendering, ck.what(obj, c))
        if key not in cache:
            env, _ = container_env(rendering, c)
            env.update({k: tokens[k] for k in tokens if k in env})
            cache[key] = nb_config(nbserve_bin, home, env)
        done = cache[key]
        assert done.returncode == 0, f"nbserve config refused the settings of {key[1]}:\n{done.stderr}"
        return json.loads(done.stdout)

    return get


def test_nbserve_config_rejects_an_unknown_key(nbserve_bin, tmp_path):
    # Control: without it, the acceptance below would prove nothing.
    assert nb_config(nbserve_bin, tmp_path, {"NBSERVE__SERVER__NO_SUCH_SETTING": "1"}).returncode == 3


@pytest.mark.parametrize("rendering, obj, c", CONTAINERS)
def test_nbserve_config_accepts_every_nbserve_variable_of_the_container(rendering, obj, c, settings_of):
    env, missing = container_env(rendering, c)
    assert env, "no NBSERVE__* settings found: the extraction is broken"
    assert not missing, missing
    settings_of(rendering, c, obj)


# ------------------------------------------------- probes, ports, shutdown
@pytest.mark.parametrize("rendering, obj, c", SERVING)
def test_container_port_is_server_port(rendering, obj, c, settings_of):
    port = settings_of(rendering, c, obj)["server"]["port"]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    assert port in ports.values(), f"ports {ports}, server.port {port}"


PROBE_PATHS = {"livenessProbe": {"/health", "/v2/health/live"},
               "readinessProbe": {"/ready", "/v2/health/ready"},
               "startupProbe": {"/health", "/ready", "/v2/health/live", "/v2/health/ready"}}


@pytest.mark.parametrize("probe", PROBE_PATHS)
@pytest.mark.parametrize("rendering, obj, c", SERVING)
def test_probe_gets_a_health_route_on_server_port(rendering, obj, c, probe, settings_of):
    port = settings_of(rendering, c, obj)["server"]["port"]
    p = c.get(probe)
    assert p is not None, f"no {probe}"
    get = p.get("httpGet", {})
    ports = {q.get("name"): q["containerPort"] for q in c.get("ports", [])}
    got = get.get("port")
    got = ports.get(got, got) if isinstance(got, str) else got
    assert get.get("path") in PROBE_PATHS[probe] and got == port, \
        f"{probe} GET {get.get('path')} on port {got}; expected one of {sorted(PROBE_PATHS[probe])} on {port}"


@pytest.mark.parametrize("rendering, obj, c", SERVING)
def test_termination_grace_exceeds_drain_delay_plus_shutdown_timeout(rendering, obj, c, settings_of):
    server = settings_of(rendering, c, obj)["server"]
    grace = pod_of(obj).get("terminationGracePeriodSeconds", 30)
    need = server["drain_delay_secs"] + server["shutdown_timeout_secs"]
    assert grace > need, f"terminationGracePeriodSeconds {grace}, drain_delay_secs + shutdown_timeout_secs {need}"


@pytest.mark.parametrize("rendering, obj, c", DEPLOYMENTS)
def test_deployment_has_topology_spread_constraints(rendering, obj, c):
    assert pod_of(obj).get("topologySpreadConstraints")


# --------------------------------------------------------------- hardening
HARDENING = {
    "runAsNonRoot": lambda psc, sc, res: psc.get("runAsNonRoot") is True or sc.get("runAsNonRoot") is True,
    "readOnlyRootFilesystem": lambda psc, sc, res: sc.get("readOnlyRootFilesystem") is True,
    "allowPrivilegeEscalation false": lambda psc, sc, res: sc.get("allowPrivilegeEscalation") is False,
    "capabilities drop ALL": lambda psc, sc, res: sc.get("capabilities", {}).get("drop") == ["ALL"],
    "seccomp RuntimeDefault":
        lambda psc, sc, res: (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        == "RuntimeDefault",
    "cpu and memory requests and limits":
        lambda psc, sc, res: all(k in res.get(s, {}) for s in ("requests", "limits") for k in ("cpu", "memory")),
}


@pytest.mark.parametrize("aspect", HARDENING)
@pytest.mark.parametrize("rendering, obj, c", CONTAINERS + INITS)
def test_container_is_hardened(rendering, obj, c, aspect):
    pod = pod_of(obj)
    psc, sc = pod.get("securityContext", {}), c.get("securityContext", {})
    assert HARDENING[aspect](psc, sc, c.get("resources", {})), \
        f"pod securityContext {psc}, container securityContext {sc}, resources {c.get('resources')}"


# ---------------------------------------------------------- retrain CronJob
# The retrain job: hardened like the server (above), one at a time, never
# restarted in place, and writing the very model file the replicas serve.
@pytest.mark.parametrize("rendering, obj, c", CRONJOBS)
def test_cronjob_forbids_concurrent_runs(rendering, obj, c):
    assert obj["spec"].get("concurrencyPolicy") == "Forbid"


@pytest.mark.parametrize("rendering, obj, c", CRONJOBS)
def test_cronjob_pods_are_not_restarted_always(rendering, obj, c):
    assert pod_of(obj).get("restartPolicy") in ("Never", "OnFailure"), pod_of(obj).get("restartPolicy")


@pytest.mark.parametrize("rendering, obj, c", CRONJOBS)
def test_cronjob_gate_rejection_fails_the_job_without_retries(rendering, obj, c):
    rules = (obj["spec"]["jobTemplate"]["spec"].get("podFailurePolicy") or {}).get("rules", [])
    fail_on = {v for r in rules if r.get("action") == "FailJob" for v in (r.get("onExitCodes") or {}).get("values", [])}
    assert 5 in fail_on, f"FailJob on {sorted(fail_on)}"


@pytest.mark.parametrize("rendering, obj, c", CRONJOBS)
def test_cronjob_runs_nbserve_retrain(rendering, obj, c):
    assert c.get("args", [])[:1] == ["retrain"], c.get("args")


def pvc_mount(pod: dict, c: dict, file_path: str) -> tuple[str, bool] | None:
    """(claimName, read-only) of the PVC mount holding file_path in c."""
    m = ck.mount_of(c, file_path)
    pvc = ck.volume(pod, m["name"]).get("persistentVolumeClaim") if m else None
    if pvc is None:
        return None
    return pvc["claimName"], bool(m.get("readOnly") or pvc.get("readOnly"))


@pytest.mark.parametrize("rendering, obj, c", CRONJOBS)
def test_cronjob_writes_model_path_on_a_writable_pvc(rendering, obj, c, settings_of):
    model_path = settings_of(rendering, c, obj)["model"]["path"]
    mount = pvc_mount(pod_of(obj), c, model_path)
    assert mount is not None and not mount[1], f"model.path {model_path} on {mount}"


@pytest.mark.parametrize("rendering, obj, c", CRONJOBS)
def test_cronjob_replicas_serve_model_path_from_the_same_pvc(rendering, obj, c, settings_of):
    model_path = settings_of(rendering, c, obj)["model"]["path"]
    job = pvc_mount(pod_of(obj), c, model_path)
    serving = [(d["metadata"]["name"], pvc_mount(pod_of(d), dc, model_path))
               for d in DOCS[rendering] if d["kind"] == "Deployment" for dc in pod_of(d)["containers"]]
    assert serving and job and all(m is not None and m[0] == job[0] for _, m in serving), \
        f"retrain {job}, replicas {serving}"


# ------------------------------------------------- check_kubernetes.py's checks
def holds(check: ck.Check) -> None:
    ok, text, detail = check
    assert ok, f"{text}: {detail}"


@pytest.mark.parametrize("rendering, obj, pod, labels", WORKLOADS)
def test_service_account_token_is_not_mounted(rendering, obj, pod, labels):
    holds(ck.pod_hardening(obj, pod)[0])


@pytest.mark.parametrize("rendering, obj, pod, labels", WORKLOADS)
def test_every_image_is_pinned_to_a_release(rendering, obj, pod, labels):
    holds(ck.pod_hardening(obj, pod)[1])


@pytest.mark.parametrize("rendering, obj, pod, labels", WORKLOADS)
def test_no_secret_or_token_in_any_containers_environment(rendering, obj, pod, labels):
    holds(ck.no_secret_env(obj, pod))


def delivered(rendering, obj, c, settings_of) -> list[ck.Check]:
    return ck.model_delivered(obj, pod_of(obj), c, settings_of(rendering, c, obj), DOCS[rendering], ROOT)


@pytest.mark.parametrize("rendering, obj, c", SERVING)
def test_a_serving_pod_finds_a_model_at_model_path(rendering, obj, c, settings_of, figures):
    check = delivered(rendering, obj, c, settings_of)[0]
    holds(check)
    figures(f"{rendering} model delivery", check[1])


# Pods with an init container that writes model.path: its script is run here.
SEEDED = [p for p in SERVING if any("NBSERVE__MODEL__PATH" in ck.resolve_env(ic, DOCS[p.values[0]])
                                    for ic in pod_of(p.values[1]).get("initContainers", []))]


@pytest.mark.parametrize("rendering, obj, c", SEEDED)
def test_the_seeding_init_container_writes_the_model_once_and_keeps_one_there(rendering, obj, c, settings_of):
    checks = delivered(rendering, obj, c, settings_of)
    assert len(checks) == 2, checks
    holds(checks[1])


@pytest.mark.parametrize("key", ["admin", "feedback"])
@pytest.mark.parametrize("rendering, obj, c", DEPLOYMENTS)
def test_token_file_comes_from_a_required_read_only_secret(rendering, obj, c, key):
    holds(ck.token_file(obj, pod_of(obj), c, DOCS[rendering], key))


SERVER_POLICIES = ["select its pods", "ingress only to server.port from named peers", "Prometheus may scrape",
                   "API clients may connect"]


@pytest.mark.parametrize("aspect", range(len(SERVER_POLICIES)), ids=SERVER_POLICIES)
@pytest.mark.parametrize("rendering, obj, c", SERVING)
def test_network_policies_of_a_server(rendering, obj, c, aspect, settings_of):
    labels = next(p.values[3] for p in WORKLOADS if p.values[0] == rendering and p.values[1] is obj)
    holds(ck.network_policies(obj, pod_of(obj), labels, DOCS[rendering], settings_of(rendering, c, obj))[aspect])


@pytest.mark.parametrize("rendering, obj, c", CRONJOBS)
def test_network_policies_admit_nothing_to_the_retrain_job(rendering, obj, c):
    labels = next(p.values[3] for p in WORKLOADS if p.values[0] == rendering and p.values[1] is obj)
    holds(ck.network_policies(obj, pod_of(obj), labels, DOCS[rendering], None)[0])


def test_base_sets_a_drain_delay():
    # Endpoints are removed before the listener closes.
    env = dict(line.split("=", 1) for line in (KUBE / "base" / "nbserve.env").read_text().splitlines()
               if "=" in line and not line.startswith("#"))
    assert int(env.get("NBSERVE__SERVER__DRAIN_DELAY_SECS", "0")) > 0
