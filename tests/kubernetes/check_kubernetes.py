"""What tests/kubernetes/ reads out of a rendered kustomization (`kubectl
kustomize DIR`), and the checks that need more than a look at one field:

  - model delivery: every serving pod finds a model file at model.path, either
    in the image (a file the Dockerfile copies there, not hidden by a volume)
    or on a volume an init container of the same image fills from such a file;
    that init container's script is run here on an empty directory (it writes
    the model) and over another model (it keeps that one);
  - secrets: no container gets a Secret or a token through its environment;
    the admin and feedback token files of every Deployment come from a
    required Secret volume, read-only, not readable by others;
  - NetworkPolicies: every pod is selected by one; the servers admit only
    server.port, only from named peers, including Prometheus (the metrics
    share that port); the retrain job's pods admit nothing;
  - every pod: automountServiceAccountToken false, every image pinned to a
    release (a tag other than latest, or a digest).

Each check is a function returning (ok, text, detail); the tests assert `ok`
and show the text and detail when it fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

Check = tuple[bool, str, str]
KSERVE_POD_LABEL = "serving.kserve.io/inferenceservice"
PROMETHEUS = ("app.kubernetes.io/name", "prometheus")


# ---------------------------------------------------------------- reading the rendering
def workloads(docs: list[dict]) -> list[tuple[dict, dict, dict]]:
    """(object, pod spec, pod labels) of every pod-making object."""
    out = []
    for d in docs:
        kind = d["kind"]
        if kind == "Deployment":
            t = d["spec"]["template"]
            out.append((d, t["spec"], (t.get("metadata") or {}).get("labels") or {}))
        elif kind == "CronJob":
            t = d["spec"]["jobTemplate"]["spec"]["template"]
            out.append((d, t["spec"], (t.get("metadata") or {}).get("labels") or {}))
        elif kind == "InferenceService":
            # KServe labels the predictor pods it creates with the service's name.
            out.append((d, d["spec"]["predictor"], {KSERVE_POD_LABEL: d["metadata"]["name"]}))
    return out


def what(obj: dict, container: dict | None = None) -> str:
    base = f"{obj['kind']}/{obj['metadata']['name']}"
    return f"{base}/{container['name']}" if container else base


def all_containers(pod: dict) -> list[dict]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def resolve_env(container: dict, docs: list[dict], secret_value=lambda name, key: f"<secret {name}/{key}>",
                missing: list[str] | None = None) -> dict[str, str]:
    """The container's environment as written (ConfigMap envFrom, then env);
    a Secret reference becomes `secret_value(NAME, KEY)` (a `<secret
    NAME/KEY>` marker by default). A reference to a ConfigMap key that does
    not exist is an empty value, and is described in `missing` if given."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        env.update(maps.get((src.get("configMapRef") or {}).get("name"), {}))
    for e in container.get("env", []):
        ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
        secret = (e.get("valueFrom") or {}).get("secretKeyRef")
        if secret:
            env[e["name"]] = secret_value(secret["name"], secret["key"])
        elif ref:
            if missing is not None and ref["key"] not in maps.get(ref["name"], {}):
                missing.append(f"{e['name']} refers to a missing ConfigMap key {ref['name']}/{ref['key']}")
            env[e["name"]] = maps.get(ref["name"], {}).get(ref["key"], "")
        else:
            env[e["name"]] = e.get("value", "")
    return env


def mount_of(container: dict, path: str) -> dict | None:
    """The volumeMount holding `path` in the container (longest prefix)."""
    best = None
    for m in container.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        if path.startswith(mp + "/") and (best is None or len(mp) > len(best["mountPath"].rstrip("/"))):
            best = m
    return best


def volume(pod: dict, name: str) -> dict:
    return next((v for v in pod.get("volumes", []) if v["name"] == name), {})


def image_files(root: Path) -> tuple[dict[str, Path], str]:
    """Files the Dockerfile puts into the runtime image ({image path: repo
    file}) and the runtime stage's WORKDIR. Understands the one way this
    Dockerfile does it: `cp -R SRC /out/DEST` in the builder, then
    `COPY --from=builder /out/ /` in the last stage."""
    text = (root / "Dockerfile").read_text().replace("\\\n", " ")
    stages = re.split(r"(?m)^FROM\s", text)
    runtime = stages[-1]
    files: dict[str, Path] = {}
    if re.search(r"(?m)^COPY\s+--from=builder\s+/out/\s+/\s*$", runtime):
        for src, dest in re.findall(r"cp -R (\S+) /out(/\S+)", text):
            src_dir = root / src
            for f in sorted(src_dir.rglob("*")) if src_dir.is_dir() else []:
                if f.is_file():
                    files[f"{dest.rstrip('/')}/{f.relative_to(src_dir).as_posix()}"] = f
    workdirs = re.findall(r"(?m)^WORKDIR\s+(\S+)", runtime)
    return files, (workdirs[-1] if workdirs else "/")


def pinned(image: str) -> bool:
    """A digest, or a tag other than `latest`."""
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


# ---------------------------------------------------------------- model delivery
def model_delivered(obj: dict, pod: dict, c: dict, settings: dict, docs: list[dict], root: Path) -> list[Check]:
    """A pod of `obj` finds a model file at model.path: in the image, or
    seeded onto its volume by an init container (whose script is run here)."""
    files, workdir = image_files(root)
    path = str(settings["model"]["path"])
    if not path.startswith("/"):
        path = os.path.normpath(os.path.join(c.get("workingDir", workdir), path))
    head = f"{what(obj, c)}: a pod finds a model at model.path {path}"
    mount = mount_of(c, path)
    if mount is None:
        if path in files:
            return [(True, f"{head} (in the image: the Dockerfile copies {files[path].relative_to(root)})", "")]
        return [(False, head, f"not on a volume and not a file the Dockerfile puts into the image ({sorted(files)})")]
    vol = volume(pod, mount["name"])
    seeders = [ic for ic in pod.get("initContainers", [])
               if any(m["name"] == mount["name"] and m["mountPath"] == mount["mountPath"] and not m.get("readOnly")
                      for m in ic.get("volumeMounts", []))
               and resolve_env(ic, docs).get("NBSERVE__MODEL__PATH") == path]
    if not seeders:
        return [(False, head, f"{path} is on volume {mount['name']} ({sorted(vol)}) and no init container "
                 "writes NBSERVE__MODEL__PATH there: a new, empty claim has no model")]
    ic = seeders[0]
    env = resolve_env(ic, docs)
    src = env.get("SEED_FROM", "")
    problems = []
    if ic.get("image") != c.get("image"):
        problems.append(f"init container image {ic.get('image')} is not the server's {c.get('image')}")
    if src not in files or mount_of(ic, src) is not None:
        problems.append(f"SEED_FROM={src!r} is not a file the Dockerfile puts into the image")
    cmd = [*ic.get("command", []), *ic.get("args", [])]
    if len(cmd) != 4 or cmd[1:3] != ["sh", "-c"]:
        problems.append(f"command is not [SHELL, sh, -c, SCRIPT]: {cmd[:3]}")
    else:
        problems += shell_provided(pod, ic, cmd[0], files)
    if problems:
        return [(False, head, "; ".join(problems))]
    ok = (True, f"{head} (volume {mount['name']}: init container {ic['name']}, same image, "
          f"seeds it from {src}, which the Dockerfile copies from {files[src].relative_to(root)})", "")
    return [ok, seed_runs(obj, ic, cmd[3], env, mount["mountPath"], path, files[src])]


def shell_provided(pod: dict, ic: dict, shell: str, files: dict[str, Path]) -> list[str]:
    """The seeding shell exists: in the image, or on an emptyDir an earlier
    init container writes (the nbserve image has no shell)."""
    if shell in files:
        return []
    m = mount_of(ic, shell)
    if m is None or "emptyDir" not in volume(pod, m["name"]):
        return [f"{shell} is neither in the image nor on an emptyDir"]
    inits = pod.get("initContainers", [])
    for earlier in inits[:inits.index(ic)]:
        writes = any(em["name"] == m["name"] and em["mountPath"] == m["mountPath"] and not em.get("readOnly")
                     for em in earlier.get("volumeMounts", []))
        if writes and shell in " ".join([*earlier.get("command", []), *earlier.get("args", [])]):
            return []
    return [f"no earlier init container puts {shell} on volume {m['name']}"]


def seed_runs(obj: dict, ic: dict, script: str, env: dict[str, str], mount_path: str, path: str,
              shipped: Path) -> Check:
    """Runs the seeding script with `sh`, the volume a temporary directory and
    SEED_FROM the repository's file: an empty volume gets the shipped model
    (and no leftovers); a model already there is kept."""
    text = (f"{what(obj, ic)}: run on an empty claim it writes the shipped model; over another model it keeps "
            "it; on a claim holding other files it writes nothing")
    with tempfile.TemporaryDirectory() as tmp:
        claim = Path(tmp) / "claim"
        claim.mkdir()
        target = claim / os.path.relpath(path, mount_path)

        def mapped(v: str) -> str:
            if v == env.get("SEED_FROM"):
                return str(shipped)
            if v == mount_path.rstrip("/") or v.startswith(mount_path.rstrip("/") + "/"):
                return str(claim) + v[len(mount_path.rstrip("/")):]
            return v

        run_env = {k: mapped(v) for k, v in env.items()} | {"PATH": "/usr/bin:/bin"}

        def run() -> subprocess.CompletedProcess:
            return subprocess.run(["sh", "-c", script], env=run_env, capture_output=True, text=True, timeout=60)

        first = run()
        seeded = target.is_file() and target.read_bytes() == shipped.read_bytes()
        leftovers = sorted(p.name for p in target.parent.iterdir() if p != target)
        target.write_bytes(b'{"another": "model"}')
        second = run()
        kept = target.read_bytes() == b'{"another": "model"}'
        # A used claim (a promoted model under another name) and a mistyped model.path.
        target.rename(target.with_name("promoted.json"))
        third = run()
        untouched = sorted(p.name for p in claim.rglob("*")) == ["promoted.json"]
    ok = (first.returncode == 0 and seeded and not leftovers and second.returncode == 0 and kept
          and third.returncode == 0 and untouched)
    detail = (f"empty claim: exit {first.returncode}, model written {seeded}, leftovers {leftovers}, "
              f"output {first.stdout.strip()!r} {first.stderr.strip()!r}; existing model: exit "
              f"{second.returncode}, kept {kept}, output {second.stdout.strip()!r}; used claim: exit "
              f"{third.returncode}, nothing written {untouched}, output {third.stdout.strip()!r}")
    return ok, text, detail


# ---------------------------------------------------------------- secrets
SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|PASSWD|SECRET|API_KEY|CREDENTIALS?)$")


def no_secret_env(obj: dict, pod: dict) -> Check:
    """No container gets a Secret (secretKeyRef, envFrom secretRef) or a
    token-like variable through its environment."""
    found = []
    for c in all_containers(pod):
        found += [f"{c['name']}: envFrom Secret {s['secretRef'].get('name')}"
                  for s in c.get("envFrom", []) if s.get("secretRef")]
        found += [f"{c['name']}: {e['name']}" for e in c.get("env", [])
                  if (e.get("valueFrom") or {}).get("secretKeyRef") or SECRET_NAME.search(e["name"])]
    return not found, f"{what(obj)}: no Secret or token in any container's environment (token files only)", \
        "; ".join(found)


def token_file(obj: dict, pod: dict, c: dict, docs: list[dict], key: str) -> Check:
    """`NBSERVE__{KEY}__TOKEN_FILE` names a file of a required Secret volume,
    mounted read-only, readable by owner and group only, never written."""
    var = f"NBSERVE__{key.upper()}__TOKEN_FILE"
    env = resolve_env(c, docs)
    text = f"{what(obj, c)}: {key}.token_file comes from a required Secret (file, read-only, mode without write or other bits)"
    path = env.get(var)
    if not path:
        token_env = env.get(f"NBSERVE__{key.upper()}__TOKEN")
        return False, text, f"{var} is not set" + (f" (the token is an environment variable: {token_env})" if token_env else "")
    m = mount_of(c, path)
    secret = volume(pod, m["name"]).get("secret") if m else None
    if secret is None:
        return False, text, f"{path} is not on a Secret volume"
    name = os.path.relpath(path, m["mountPath"])
    items = secret.get("items")
    item = next((i for i in items if i["path"] == name), None) if items else {"key": name, "path": name}
    mode = (item or {}).get("mode", secret.get("defaultMode", 0o644))
    problems = []
    if item is None:
        problems.append(f"Secret {secret.get('secretName')} projects no {name}")
    if secret.get("optional") is True:
        problems.append(f"Secret {secret.get('secretName')} is optional: without it the pod starts without the token")
    if mode & 0o227:
        problems.append(f"mode {mode:#o} has write or other bits")
    if not m.get("readOnly"):
        problems.append("the mount is writable")
    detail = "; ".join(problems)
    return not problems, f"{text}: {path} = Secret {secret.get('secretName')} key {(item or {}).get('key')}, mode {mode:#o}", detail


# ---------------------------------------------------------------- NetworkPolicies
def selects(np: dict, obj: dict, labels: dict) -> bool:
    if (np["metadata"].get("namespace") or "") != (obj["metadata"].get("namespace") or ""):
        return False
    sel = np["spec"].get("podSelector") or {}
    if sel.get("matchExpressions"):
        return False  # not understood here: not counted
    return all(labels.get(k) == v for k, v in (sel.get("matchLabels") or {}).items())


def ingress_policies(docs: list[dict], obj: dict, labels: dict) -> list[dict]:
    return [np for np in docs if np["kind"] == "NetworkPolicy" and selects(np, obj, labels)
            and "Ingress" in np["spec"].get("policyTypes", ["Ingress"])]


def named_peer(peer: dict) -> bool:
    """A peer naming its pods or namespaces by label: not everything (an empty
    selector), not an IP block."""
    if "ipBlock" in peer or not peer:
        return False
    return all((peer[s] or {}).get("matchLabels") for s in ("podSelector", "namespaceSelector") if s in peer)


def network_policies(obj: dict, pod: dict, labels: dict, docs: list[dict], settings: dict | None) -> list[Check]:
    pols = ingress_policies(docs, obj, labels)
    names = sorted(np["metadata"]["name"] for np in pols)
    head = f"{what(obj)}: NetworkPolicies select its pods ({names})"
    if settings is None:  # the retrain job: no server, nothing to admit
        head += " and admit no ingress"
    if not pols:
        missing = f"no NetworkPolicy selects pod labels {labels}: every pod in the cluster can connect"
        follow = [] if settings is None else ["ingress only to server.port", "Prometheus may scrape", "API clients"]
        return [(False, head, missing)] + [(False, f"{what(obj)}: {t}", missing) for t in follow]
    rules = [r for np in pols for r in np["spec"].get("ingress", [])]
    if settings is None:
        return [(not rules, head, f"rules {rules}")]
    port = settings["server"]["port"]
    named = {p.get("name"): p["containerPort"] for c in pod.get("containers", []) for p in c.get("ports", [])}
    bad = []
    for r in rules:
        ports = [named.get(p.get("port"), p.get("port")) for p in r.get("ports", [])]
        if not ports or any(p != port for p in ports):
            bad.append(f"ports {r.get('ports')} (need only server.port {port})")
        if not r.get("from") or not all(named_peer(p) for p in r["from"]):
            bad.append(f"from {r.get('from')} (need peers named by labels)")
    peers = [p for r in rules for p in r.get("from", [])]
    prom = [p for p in peers if (p.get("podSelector") or {}).get("matchLabels", {}).get(PROMETHEUS[0]) == PROMETHEUS[1]]
    annotated = ((obj["spec"].get("template") or {}).get("metadata") or {}).get("annotations", {}).get("prometheus.io/port")
    return [
        (True, head, ""),
        (not bad, f"{what(obj)}: ingress only to server.port {port}, only from peers named by labels", "; ".join(bad)),
        (bool(prom) and annotated in (None, str(port)),
         f"{what(obj)}: Prometheus pods may scrape the metrics port {port} (prometheus.io/port {annotated})",
         f"Prometheus peers {prom}"),
        (len(peers) > len(prom), f"{what(obj)}: API clients (labelled peers) may reach server.port {port}",
         f"peers {peers}"),
    ]


# ---------------------------------------------------------------- pods
def pod_hardening(obj: dict, pod: dict) -> list[Check]:
    images = sorted({c.get("image", "") for c in all_containers(pod)})
    return [
        (pod.get("automountServiceAccountToken") is False,
         f"{what(obj)}: automountServiceAccountToken: false", f"is {pod.get('automountServiceAccountToken')}"),
        (all(pinned(i) for i in images), f"{what(obj)}: every image pinned to a release ({', '.join(images)})",
         f"not pinned: {[i for i in images if not pinned(i)]}"),
    ]
