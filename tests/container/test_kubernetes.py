"""Kubernetes runs the image scripts/build-image.sh builds, and the model
reaches the pod: the Deployment of deploy/kubernetes/overlays/local (the base
with localhost/nbserve:<version>), rendered by kustomize, is run with podman
as a kubelet would: the claim and the emptyDirs as directories owned by the
pod's fsGroup, the Secrets as files, the init containers in order, then the
server, each with the manifest's command, environment (the rendered
ConfigMap), user, read-only root and dropped capabilities.

The first init container (a static busybox from the busybox image, copied to
an emptyDir) is played by Debian's static busybox: the busybox image is on a
registry. Everything else runs the manifest as written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from conftest import ROOT, SHIPPED_MODEL
from containers import cargo_version, http, image, podman, post_json, static_busybox, yaml_documents  # noqa: F401  (fixtures)

KUBE = ROOT / "deploy" / "kubernetes"
RELEASED = "ghcr.io/nbserve/nbserve"


def kubectl() -> str:
    """kubectl with kustomize v5: NBSERVE_KUBECTL, scripts/install-kubectl.sh
    when the repository has it, kubectl on PATH, or Debian's unpacked here."""
    if os.environ.get("NBSERVE_KUBECTL"):
        return os.environ["NBSERVE_KUBECTL"]
    installer = ROOT / "scripts" / "install-kubectl.sh"
    if installer.exists():
        out = subprocess.run([str(installer)], stdout=subprocess.PIPE, text=True, check=True).stdout
        return out.strip().splitlines()[-1]
    for cand in (shutil.which("kubectl"), os.path.expanduser("~/.cache/nbserve/kubectl/root/usr/bin/kubectl")):
        if cand and os.path.exists(cand):
            return cand
    cache = Path(os.environ.get("NBSERVE_CACHE", os.path.expanduser("~/.cache/nbserve"))) / "kubectl"
    subprocess.run(["bash", "-c", f"source scripts/lib/deb.sh && deb_unpack kubectl '^1\\.' '{cache}'"],
                   cwd=ROOT, check=True)
    return str(cache / "root" / "usr" / "bin" / "kubectl")


def render(directory: Path) -> list[dict]:
    out = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=True)
    return yaml_documents(text=out.stdout)


def containers_of(docs: list[dict]):
    for d in docs:
        spec = d.get("spec", {})
        pod = (spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template") or {}).get("spec")
        if d.get("kind") == "InferenceService":
            pod = spec.get("predictor")
        for c in (pod or {}).get("initContainers", []) + (pod or {}).get("containers", []):
            yield d, c


def test_the_manifests_run_the_version_build_image_builds(image):
    version = cargo_version()
    assert image.ref == f"localhost/nbserve:{version}" or os.environ.get("NBSERVE_IMAGE"), image.ref
    dirs = [KUBE / "base", *sorted(p for p in (KUBE / "overlays").iterdir() if p.is_dir()), KUBE / "kserve"]
    seen = {}
    for d in dirs:
        for obj, c in containers_of(render(d)):
            repo, _, tag = c["image"].rpartition(":")
            if repo in (RELEASED, "localhost/nbserve"):
                seen.setdefault(d.name, set()).add(c["image"])
                assert tag == version, f"{d.relative_to(ROOT)}: {obj['kind']}/{c['name']} runs {c['image']}, not {version}"
    assert seen.get("local") == {f"localhost/nbserve:{version}"}, seen
    assert seen.get("production") == {f"{RELEASED}:{version}"}, seen


def test_the_model_reaches_the_pod(image, tmp_path, figures):
    docs = render(KUBE / "overlays" / "local")
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "nbserve")
    pod = dep["spec"]["template"]["spec"]
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    sec = pod["securityContext"]
    user, group, fs_group = sec["runAsUser"], sec["runAsGroup"], sec["fsGroup"]

    # The kubelet's part: volumes, group-owned by fsGroup (setgid dirs).
    paths: dict[str, Path] = {}
    for v in pod["volumes"]:
        path = tmp_path / "volumes" / v["name"]
        path.mkdir(parents=True)
        if "secret" in v:
            for item in v["secret"]["items"]:
                f = path / item["path"]
                f.write_text(f"{v['name']}-token-for-the-pod-test-{os.getpid()}")
                os.chown(f, 0, fs_group)
                f.chmod(v["secret"]["defaultMode"])
        os.chown(path, 0, fs_group)
        path.chmod(0o2775)
        paths[v["name"]] = path
    assert "persistentVolumeClaim" in next(v for v in pod["volumes"] if v["name"] == "models")

    def env_of(c: dict) -> list[str]:
        out = []
        for ref in c.get("envFrom", []):
            out += [f"{k}={v}" for k, v in configmaps[ref["configMapRef"]["name"]].items()]
        for e in c.get("env", []):
            if "value" in e:
                out.append(f"{e['name']}={e['value']}")
            else:
                ref = e["valueFrom"]["configMapKeyRef"]
                out.append(f"{e['name']}={configmaps[ref['name']][ref['key']]}")
        return [a for kv in out for a in ("-e", kv)]

    def options(c: dict) -> list[str]:
        sc = c.get("securityContext", {})
        opts = ["--user", f"{user}:{group}", "--group-add", str(fs_group)]
        if sc.get("readOnlyRootFilesystem"):
            opts.append("--read-only")
        if "ALL" in sc.get("capabilities", {}).get("drop", []):
            opts += ["--cap-drop", "ALL"]
        if sc.get("allowPrivilegeEscalation") is False:
            opts += ["--security-opt", "no-new-privileges"]
        for m in c.get("volumeMounts", []):
            ro = ",readonly=true" if m.get("readOnly") else ""
            opts += ["--mount", f"type=bind,source={paths[m['name']]},target={m['mountPath']}{ro}"]
        return opts + env_of(c)

    # The containers share the volumes, as in the pod; a network namespace
    # of their own each is enough here (a podman pod would need its pause image).
    pod_name = f"nbserve-k8s-test-{os.getpid()}"
    port = pod["containers"][0]["ports"][0]["containerPort"]
    try:
        nbserve = pod["containers"][0]["image"]
        # The image scripts/build-image.sh built (NBSERVE_IMAGE may name another build of it).
        assert nbserve == f"localhost/nbserve:{cargo_version()}", nbserve
        for ic in pod["initContainers"]:
            if ic["image"] != nbserve:
                # The busybox image's one job: put its static busybox on the emptyDir.
                assert ic["command"][0] == "cp" and ic["command"][1] == "/bin/busybox", ic["command"]
                busybox = static_busybox()
                target = ic["command"][2]
                mount = next(m for m in ic["volumeMounts"] if target.startswith(m["mountPath"] + "/"))
                shutil.copy(busybox, paths[mount["name"]] / os.path.relpath(target, mount["mountPath"]))
                continue
            ran = podman("run", "--rm", *options(ic), "--entrypoint", ic["command"][0], image.ref,
                         *ic["command"][1:], check=False, timeout=120)
            assert ran.returncode == 0, f"init container {ic['name']} exited {ran.returncode}:\n{ran.stdout}{ran.stderr}"
        seeded = paths["models"] / "spam-nb.json"
        assert seeded.is_file() and seeded.read_bytes() == SHIPPED_MODEL.read_bytes(), sorted(paths["models"].iterdir())

        server = pod["containers"][0]
        started = time.monotonic()
        podman("run", "-d", "--name", f"{pod_name}-server", "-p", f"127.0.0.1::{port}", *options(server), image.ref,
               *server["args"])
        published = int(podman("port", f"{pod_name}-server", f"{port}/tcp").stdout.strip().rsplit(":", 1)[1])
        url = f"http://127.0.0.1:{published}"
        ready = server["readinessProbe"]["httpGet"]["path"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if http("GET", url + ready, timeout=2).status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError(podman("logs", f"{pod_name}-server", check=False).stderr[-3000:])
        figures("Kubernetes pod (podman): seeded, server ready", f"{time.monotonic() - started:.1f} s after start")
        answer = post_json(url + "/predict", {"text": "free money, click now"}).json()
        assert answer["model_version"] == json.loads(SHIPPED_MODEL.read_text())["model"]["version"], answer
        # A second start (the claim holds the model now) keeps it.
        (paths["models"] / "spam-nb.json").write_bytes(SHIPPED_MODEL.read_bytes()[:-1] + b" ")
        kept = podman("run", "--rm", *options(pod["initContainers"][-1]), "--entrypoint",
                      pod["initContainers"][-1]["command"][0], image.ref, *pod["initContainers"][-1]["command"][1:],
                      check=False)
        assert kept.returncode == 0 and "exists: kept" in kept.stdout, kept
    finally:
        podman("rm", "-f", "-t", "0", f"{pod_name}-server", check=False)

