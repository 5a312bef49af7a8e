#!/usr/bin/env bash
# Offline checks of deploy/kubernetes/ (tests/kubernetes/, pytest): the
# kustomize base, every overlay and the KServe example are rendered with
# kubectl's built-in kustomize v5 (scripts/install-kubectl.sh) and checked:
#   - kubernetes-validate --strict (Kubernetes 1.32, schemas bundled) accepts
#     every built-in kind and rejects a control (an unknown field);
#   - every NBSERVE__* variable a container gets is accepted by `nbserve config`
#     with that exact environment;
#   - probes, ports, termination grace vs drain delay + shutdown timeout, and a
#     hardened security context (init containers too) agree with the settings;
#   - the retrain CronJob: Forbid concurrency, a rejection (exit 5) fails the
#     Job without retries, it writes model.path on the PVC the replicas serve;
#   - model delivery (the seeding init container's script is run), token files
#     from required Secret volumes, NetworkPolicies, no service account token,
#     every image pinned (tests/kubernetes/check_kubernetes.py);
#   - deploy/kubernetes/dask (the counting flow's DaskCluster): validated
#     against the dask-kubernetes operator's CRD schema, from the wheel pinned
#     in scripts/check-kubernetes-crd-requirements.txt (downloaded with
#     --require-hashes, not installed), hardening and paths checked against
#     the flow (tests/kubernetes/test_dask_cluster.py).
#
#   scripts/check-kubernetes.sh            # builds the debug nbserve if needed
#   NBSERVE_BIN=path/to/nbserve scripts/check-kubernetes.sh
#
# kubernetes-validate and pytest are pinned and hash-checked in
# scripts/check-kubernetes-requirements.txt (venv under
# ${NBSERVE_CACHE:-~/.cache/nbserve}). Prints `kubernetes: N passed, M failed`
# (from pytest's JUnit XML); pytest arguments pass through.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
NBSERVE_KUBECTL="$(scripts/install-kubectl.sh | tail -n 1)"
export NBSERVE_KUBECTL
venv="$(NBSERVE_PYTHON="${NBSERVE_PYTHON:-python3.11}" pinned_venv kubernetes-validate scripts/check-kubernetes-requirements.txt)"
pytest_suite kubernetes "$venv/bin/python" tests/kubernetes "$@"
