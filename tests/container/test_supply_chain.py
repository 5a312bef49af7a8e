"""The image's supply chain, as far as it can be verified offline: the SBOM in
the image (CycloneDX from Cargo.lock, cargo-cyclonedx pinned alike in the
Dockerfile, scripts/install-cargo-cyclonedx.sh and the release workflow) lists
exactly the crates the binary is built from; the manifest a push would send
names the image's own config (what the release workflow compares with the
gated image's ID before it signs that digest); and the release workflow signs
and attests the pushed digest, never a tag. Keyless cosign signing needs
GitHub's OIDC token and a transparency log: it runs only in the workflow.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

from conftest import ROOT
from containers import cargo_version, image, podman, yaml_documents  # noqa: F401  (fixtures)

SBOM_PATH = "/usr/share/doc/nbserve/sbom.cdx.json"


def sbom_of(image_ref: str, tmp_path: Path) -> dict:
    ctr = podman("create", image_ref).stdout.strip()
    try:
        podman("cp", f"{ctr}:{SBOM_PATH}", str(tmp_path / "sbom.cdx.json"))
    finally:
        podman("rm", ctr, check=False)
    return json.loads((tmp_path / "sbom.cdx.json").read_text())


def host_triple() -> str:
    return re.search(r"^host: (\S+)", subprocess.run(["rustc", "-vV"], capture_output=True, text=True,
                                                    check=True).stdout, re.M).group(1)


def locked_crates() -> set[tuple[str, str]]:
    """(name, version) of every crate the binary is built from on this host:
    cargo tree over normal and build dependencies, Cargo.lock as it is."""
    host = host_triple()
    out = subprocess.run(["cargo", "tree", "--locked", "--offline", "-e", "normal,build", "--target", host,
                          "--prefix", "none", "--format", "{p}"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    crates = set()
    for line in out.splitlines():
        m = re.match(r"(\S+) v(\S+)", line)
        if m and m.group(1) != "nbserve":
            crates.add((m.group(1), m.group(2)))
    return crates


def metadata_crates() -> set[tuple[str, str]]:
    """(name, version) of every crate `cargo metadata`'s resolve reaches from
    nbserve on this host through normal and build dependencies."""
    meta = json.loads(subprocess.run(["cargo", "metadata", "--locked", "--offline", "--format-version", "1",
                                      "--filter-platform", host_triple()], cwd=ROOT, capture_output=True,
                                     text=True, check=True).stdout)
    names = {p["id"]: (p["name"], p["version"]) for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = meta["resolve"]["root"]
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(d["pkg"] for d in nodes[node]["deps"]
                     if any(k["kind"] in (None, "build") for k in d["dep_kinds"]))
    return {names[i] for i in seen if i != root}


def test_the_sbom_in_the_image_lists_exactly_the_locked_crates(image, tmp_path, figures):
    assert image.labels.get("io.github.nbserve.sbom") == SBOM_PATH, image.labels
    bom = sbom_of(image.ref, tmp_path)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.5", (bom["bomFormat"], bom["specVersion"])
    top = bom["metadata"]["component"]
    assert (top["name"], top["version"]) == ("nbserve", cargo_version()), top
    components = bom["components"]
    listed = {(c["name"], c["version"]) for c in components}
    built = locked_crates()
    locked = {(p["name"], p["version"]) for p in tomllib.loads((ROOT / "Cargo.lock").read_text())["package"]}
    # Every crate the binary is built from is listed, nothing that Cargo.lock
    # does not hold. cargo-cyclonedx lists what `cargo metadata`'s resolve
    # reaches through normal and build edges, which may name a few crates that
    # feature resolution never builds (optional dependencies enabled only by
    # weak features): erring on the side of listing, but exactly that set.
    assert built <= listed, {"missing from the SBOM": sorted(built - listed)}
    assert listed <= locked, {"not in Cargo.lock": sorted(listed - locked)}
    resolved = metadata_crates()
    assert listed == resolved, {"beyond cargo metadata": sorted(listed - resolved),
                                "missing from the SBOM": sorted(resolved - listed)}
    for c in components:
        assert c.get("purl", "").startswith(f"pkg:cargo/{c['name']}@{c['version']}"), c
    # Reproducible (SOURCE_DATE_EPOCH): no random serial number.
    assert "serialNumber" not in bom
    figures("SBOM components (CycloneDX 1.5, cargo-cyclonedx)", f"{len(components)} crates "
            f"({sum(1 for c in components if c.get('licenses'))} with a licence); cargo tree: {len(built)}; "
            f"listed beyond cargo tree: {sorted(f'{n} {v}' for n, v in listed - built)}")


def test_cargo_cyclonedx_is_pinned_alike_everywhere():
    script = (ROOT / "scripts" / "install-cargo-cyclonedx.sh").read_text()
    pinned = re.search(r'^CARGO_CYCLONEDX_VERSION="([^"]+)"', script, re.M).group(1)
    dockerfile = re.findall(r"cargo install cargo-cyclonedx --version (\S+) --locked", (ROOT / "Dockerfile").read_text())
    release = re.findall(r"cargo-cyclonedx@?=?(\d+\.\d+\.\d+)", (ROOT / ".github" / "workflows" / "release.yml").read_text())
    assert dockerfile == [pinned], dockerfile
    assert set(release) <= {pinned}, release


def test_a_push_would_send_the_image_itself(image, tmp_path, figures):
    # What `docker push` sends, written to a directory instead of a registry
    # (skopeo, docker v2 schema 2 like the image): the manifest's config
    # digest is the image ID (the release workflow's check before it signs),
    # and pushing the same image again gives the same manifest digest.
    digests = []
    for n in (1, 2):
        dest = tmp_path / f"push{n}"
        subprocess.run(["skopeo", "copy", "--quiet", "--format", "v2s2", f"containers-storage:{image.ref}",
                        f"dir:{dest}"], check=True, capture_output=True, text=True)
        manifest = json.loads((dest / "manifest.json").read_text())
        assert manifest["config"]["digest"] == f"sha256:{image.id}", (manifest["config"], image.id)
        digests.append(subprocess.run(["skopeo", "manifest-digest", str(dest / "manifest.json")], check=True,
                                      capture_output=True, text=True).stdout.strip())
    figures("manifest digest (as pushed, docker v2s2)", digests[0])
    assert digests[0] == digests[1], digests


def workflow(name: str) -> dict:
    return yaml_documents(ROOT / ".github" / "workflows" / name)[0]


def test_the_release_workflow_signs_and_attests_the_gated_digest():
    wf = workflow("release.yml")
    build, publish = wf["jobs"]["build"], wf["jobs"]["publish"]
    # Only the publishing job can write: the build job runs untrusted code.
    assert build["permissions"] == {"contents": "read"}, build["permissions"]
    assert publish["permissions"].get("id-token") == "write"
    runs = "\n".join(s.get("run", "") for s in publish["steps"])
    # The pushed manifest must name the gated image's config, before anything is signed.
    assert '[ "$config" = "$GATED_ID" ]' in runs
    signs = [line.strip() for line in runs.splitlines() if line.strip().startswith("cosign ")]
    assert signs and all("@$DIGEST" in line or '@"$DIGEST"' in line for line in signs), signs
    assert any(s.startswith("cosign sign ") for s in signs) and any(s.startswith("cosign verify") for s in signs)
    # The SBOM attached is the one inside the gated image.
    build_runs = "\n".join(s.get("run", "") for s in build["steps"])
    assert SBOM_PATH in build_runs
    uses = {s.get("uses", "").split("@")[0]: s for s in publish["steps"]}
    assert "actions/attest" in uses and uses["actions/attest"]["with"]["sbom-path"].endswith("sbom.cdx.json")
    for job in wf["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.search(r"@[0-9a-f]{40}$", step["uses"]), f"not pinned by commit: {step['uses']}"
