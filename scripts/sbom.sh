#!/usr/bin/env bash
# The SBOM of the nbserve binary: CycloneDX 1.5 JSON generated from Cargo.lock
# by cargo-cyclonedx (pinned: scripts/install-cargo-cyclonedx.sh), for the
# target this host builds (a Windows-only crate in Cargo.lock is not in the
# binary). Dev-dependencies are left out (cargo-cyclonedx never lists them);
# build dependencies (proc macros, build scripts) stay: they shape the code.
#
#   scripts/sbom.sh OUT.cdx.json
#   scripts/sbom.sh --cargo-cyclonedx PATH OUT.cdx.json   # a cargo-cyclonedx already installed
#
# The image carries it at /usr/share/doc/nbserve/sbom.cdx.json (the Dockerfile,
# scripts/build-image.sh) and the release workflow attests it. With
# SOURCE_DATE_EPOCH (default: the last commit's time, when there is a git
# checkout) it is reproducible: no random serial number, that timestamp.
# Prints the component count on stderr.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cdx=""
if [[ "${1:-}" == --cargo-cyclonedx ]]; then
    cdx="$2"
    shift 2
fi
out="${1:?usage: scripts/sbom.sh [--cargo-cyclonedx PATH] OUT.cdx.json}"
if [[ -z "$cdx" ]]; then
    cdx="$(scripts/install-cargo-cyclonedx.sh | tail -n 1)/cargo-cyclonedx"
fi
if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
    # Set but empty (a build argument not given) is not a time.
    unset SOURCE_DATE_EPOCH
    if epoch="$(git log -1 --format=%ct 2>/dev/null)"; then export SOURCE_DATE_EPOCH="$epoch"; fi
fi

target="$(rustc -vV | sed -n 's/^host: //p')"
# cargo-cyclonedx writes next to Cargo.toml, adding ".json" to this name.
name=".sbom-$$.cdx"
trap 'rm -f "$root/$name.json"' EXIT
# Cargo.lock must stay as it is: the SBOM describes the locked versions.
lock_before="$(sha256sum Cargo.lock)"
"$cdx" cyclonedx --manifest-path "$root/Cargo.toml" --format json --spec-version 1.5 \
    --target "$target" --override-filename "$name" --quiet >&2
[[ "$(sha256sum Cargo.lock)" == "$lock_before" ]] || { echo "sbom: Cargo.lock changed while generating the SBOM" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
mv "$name.json" "$out"
# The summary needs python3, which a Rust builder image may lack.
command -v python3 >/dev/null || exit 0
python3 - "$out" <<'PY' >&2
import json, sys
bom = json.load(open(sys.argv[1]))
assert bom["bomFormat"] == "CycloneDX", bom.get("bomFormat")
components = bom.get("components") or []
print(f"sbom: {sys.argv[1]}: CycloneDX {bom['specVersion']}, {len(components)} components, "
      f"describing {bom['metadata']['component']['name']} {bom['metadata']['component'].get('version', '')}")
PY
