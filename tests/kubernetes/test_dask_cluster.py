"""Offline checks of deploy/kubernetes/dask/ (the DaskCluster of the counting
flow, orchestration/prefect/count_flow.py):

- `kubectl kustomize` renders it; kubernetes-validate --strict accepts its
  built-in kinds (the work claim);
- the DaskCluster validates against the dask-kubernetes operator's own CRD
  schema (openAPIV3Schema of kubernetes.dask.org/v1), read from the
  dask-kubernetes wheel pinned and hash-checked in
  scripts/check-kubernetes-crd-requirements.txt (downloaded with `pip download
  --no-deps --require-hashes`, cached under ${NBSERVE_CACHE:-~/.cache/nbserve}).
  Unknown fields are rejected as `kubectl --validate=strict` does: every
  object schema with properties and no x-kubernetes-preserve-unknown-fields
  gets additionalProperties false; a control with an unknown field must fail;
- scheduler and worker pods: non-root, hardened, cpu/memory requests and
  limits, no service account token, pinned images;
- what the flow expects: workers run single-threaded, get NBSERVE_BIN at the
  path the Containerfile installs nbserve at, mount the ReadWriteMany work
  claim at the --work-dir the docs give the flow, and the scheduler Service
  serves the --address port the docs give.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

import check_kubernetes as ck
from conftest import ROOT
from test_kubernetes_manifests import render, validate

DASK = ROOT / "deploy" / "kubernetes" / "dask"
REQS = ROOT / "scripts" / "check-kubernetes-crd-requirements.txt"
CRD_IN_WHEEL = "dask_kubernetes/operator/deployment/helm/dask-kubernetes-operator/crds/daskcluster.yaml"
DOC = ROOT / "docs" / "distributed-training.md"


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    docs, err = render(DASK)
    assert docs, f"kubectl kustomize {DASK}: {err}"
    return docs


@pytest.fixture(scope="module")
def cluster(rendered) -> dict:
    found = [d for d in rendered if d["kind"] == "DaskCluster"]
    assert len(found) == 1, [d["kind"] for d in rendered]
    return found[0]


def wheel() -> Path:
    """The pinned dask-kubernetes wheel, downloaded once (hash-checked)."""
    digest = hashlib.sha256(REQS.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("NBSERVE_CACHE") or Path.home() / ".cache" / "nbserve") / f"crd-{digest}"
    found = sorted(cache.glob("dask_kubernetes-*.whl"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                        "-r", str(REQS), "-d", str(cache)], check=True)
        found = sorted(cache.glob("dask_kubernetes-*.whl"))
    assert len(found) == 1, found
    return found[0]


def strict(schema):
    """The schema with unknown fields rejected (kubectl --validate=strict):
    additionalProperties false where the schema lists properties and does not
    preserve unknown fields."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def crd_schema() -> dict:
    with zipfile.ZipFile(wheel()) as z:
        crd = yaml.safe_load(z.read(CRD_IN_WHEEL))
    assert crd["spec"]["group"] == "kubernetes.dask.org" and crd["spec"]["names"]["kind"] == "DaskCluster"
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1" and v["served"])
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    # The API server checks these itself; CRD schemas may leave them out.
    schema.setdefault("properties", {}).update(
        {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}})
    return strict(schema)


def errors(schema: dict, obj: dict) -> list[str]:
    v = jsonschema.Draft4Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(obj)]


def pods(cluster: dict) -> list[tuple[str, dict]]:
    return [(role, cluster["spec"][role]["spec"]) for role in ("scheduler", "worker")]


def test_kustomize_renders_the_claim_and_the_cluster(rendered):
    assert sorted(d["kind"] for d in rendered) == ["DaskCluster", "PersistentVolumeClaim"]


def test_kubernetes_validate_strict_accepts_the_builtin_kinds(rendered, tmp_path):
    builtin = [d for d in rendered if d["apiVersion"] == "v1"]
    f = tmp_path / "builtin.yaml"
    f.write_text(yaml.safe_dump_all(builtin))
    done = validate(f)
    assert done.returncode == 0, done.stdout + done.stderr


def test_daskcluster_validates_against_the_operators_crd_schema(cluster, crd_schema, figures):
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    assert errors(crd_schema, cluster) == []
    figures("DaskCluster schema", f"{wheel().name}: {CRD_IN_WHEEL} (v1), unknown fields rejected")


@pytest.mark.parametrize("where", ["spec", "spec/worker/spec/containers/0", "spec/scheduler/service"])
def test_crd_schema_rejects_an_unknown_field(cluster, crd_schema, where):
    bad = copy.deepcopy(cluster)
    node = bad
    for part in where.split("/"):
        node = node[int(part)] if part.isdigit() else node[part]
    node["replicaz"] = 3
    assert any("replicaz" in e for e in errors(crd_schema, bad))


def test_crd_schema_rejects_a_wrong_type(cluster, crd_schema):
    bad = copy.deepcopy(cluster)
    bad["spec"]["worker"]["replicas"] = "four"
    assert errors(crd_schema, bad)


@pytest.mark.parametrize("role", ["scheduler", "worker"])
def test_pods_run_non_root_hardened_with_limits_and_no_token(cluster, role):
    pod = cluster["spec"][role]["spec"]
    sec = pod.get("securityContext") or {}
    assert sec.get("runAsNonRoot") is True and sec.get("runAsUser", 0) != 0, sec
    assert (sec.get("seccompProfile") or {}).get("type") == "RuntimeDefault"
    assert pod.get("automountServiceAccountToken") is False
    for c in ck.all_containers(pod):
        cs = c.get("securityContext") or {}
        assert cs.get("allowPrivilegeEscalation") is False and cs.get("readOnlyRootFilesystem") is True, c["name"]
        assert cs.get("privileged") is not True and (cs.get("capabilities") or {}).get("drop") == ["ALL"]
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(res.get(kind) or {}), f"{c['name']}: {kind} {res}"
        assert ck.pinned(c["image"]), c["image"]


def containerfile_binary() -> str:
    text = (DASK / "Containerfile").read_text()
    m = re.search(r"(?m)^COPY --from=nbserve \S+ (\S+)$", text)
    assert m, "Containerfile copies no nbserve binary"
    assert re.search(rf"(?m)^ENV .*NBSERVE_BIN={re.escape(m.group(1))}\b", text)
    return m.group(1)


def kubernetes_section() -> str:
    text = DOC.read_text()
    start = text.index("**Kubernetes, with dask-kubernetes:**")
    return " ".join(text[start:text.index("\n- ", start)].split())


def test_workers_get_what_the_count_flow_expects(cluster, rendered):
    worker = cluster["spec"]["worker"]["spec"]
    (c,) = worker["containers"]
    cmd = c.get("args", [])
    # one count (one nbserve process) per worker at a time, as the LocalCluster
    assert cmd[:2] == ["dask", "worker"] and cmd[cmd.index("--nthreads") + 1] == "1"
    env = ck.resolve_env(c, rendered)
    assert env.get("NBSERVE_BIN") == containerfile_binary()
    # the docs' --work-dir is on the work claim, mounted writable by every worker
    m = re.search(r"--work-dir (/\S+)", kubernetes_section())
    assert m, "the Kubernetes part of the docs gives no --work-dir"
    mount = ck.mount_of(c, m.group(1).rstrip("/") + "/x")
    assert mount and not mount.get("readOnly"), f"{m.group(1)} is not on a writable mount: {c['volumeMounts']}"
    claim = (ck.volume(worker, mount["name"]).get("persistentVolumeClaim") or {}).get("claimName")
    pvc = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "PersistentVolumeClaim"}
    assert claim in pvc and pvc[claim]["spec"]["accessModes"] == ["ReadWriteMany"], claim


def test_docs_address_is_the_scheduler_service(cluster):
    m = re.search(r"--address tcp://([a-z0-9-]+)-scheduler\.[A-Z]+:(\d+)", kubernetes_section())
    assert m, "the Kubernetes part of the docs gives no --address"
    assert m.group(1) == cluster["metadata"]["name"]
    ports = {p["port"] for p in cluster["spec"]["scheduler"]["service"]["ports"]}
    assert int(m.group(2)) in ports
