#!/usr/bin/env python3
"""The checks on the manifests under k8s/ that no tool does: what they must agree on with the
sidecar, with each other and with this project's choices.

Run through `bash k8s/check.sh`, which renders every kustomization with `kubectl kustomize`
into DIR/rendered/ and afterwards runs kubernetes-validate and promtool. Subcommands:

  check --workdir DIR   every check below, on kustomize's output in DIR/rendered/; leaves
                        inputs for check.sh's later steps in DIR
  sync-rules            regenerate monitoring/prometheusrule.yaml from monitoring/alerts.yaml

What is checked:
  * every kustomization under k8s/ is one this script knows, and every file under k8s/ is
    listed by a kustomization or is a known non-resource;
  * the rendered objects of core kinds are written out for kubernetes-validate (check.sh);
    PodMonitor and PrometheusRule, which need the Prometheus Operator's CRDs, against
    strict JSON Schemas transcribed below from those CRDs (only the fields used here);
  * the pod template: native sidecar shape, security contexts, probes on /healthz and
    /readyz via the named port, volumes and mounts, ConfigMap and Secret references (to the
    names kustomize generated), env names the sidecar knows (read from
    sidecar/src/config.rs), grace period >= drain, the in-memory bounds (backlog, cache,
    thread cache, given or sized by the sidecar) within half the memory limit,
    WAL volume size >= the WAL's bound;
  * the StatefulSet of the persistent-wal overlay has the Deployment's pod template;
  * NetworkPolicies: every sidecar pod is selected, and no rule opens the sidecar's port
    to anything but a namespace-selected peer;
  * the PodMonitor selects every sidecar pod, on the sidecar's port name;
  * agent-types.toml: the rules the sidecar applies at start-up, and valid JSON Schemas;
  * alerts.yaml and prometheusrule.yaml carry the same rules; the metric names used by
    alerts and dashboard are the sidecar's documented metrics (and, once
    sidecar/src/metrics* exists, appear there);
  * dashboard.json: structure, data source variable, unique ids, no overlapping panels;
    its queries are written out as a rule file so that promtool parses them (check.sh);
  * the Dockerfile's USER and EXPOSE match the pods.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml

K8S = Path(__file__).resolve().parent
REPO = K8S.parent

# Files under k8s/ that no kustomization lists, and why.
NON_RESOURCES = {
    "README.md": "documentation",
    "check.sh": "the check script",
    "validate.py": "this script",
    "requirements-check.txt": "pinned tools for check.sh",
    "base/mongodb-secret.example.yaml": "example, created with kubectl (validated on its own)",
    "monitoring/alerts.yaml": "plain Prometheus rule file (promtool)",
    "monitoring/alerts_test.yaml": "promtool unit tests",
}
# Every kustomization under k8s/ (check.sh renders whatever it finds; a new one must be
# added here, and to WORKLOAD_BUILDS if it runs the agent pod, to get these checks).
KUSTOMIZATIONS = ["base", "overlays/persistent-wal", "monitoring"]
WORKLOAD_BUILDS = ["base", "overlays/persistent-wal"]

SIDECAR = "agentstate"
SIDECAR_PORT_NAME = "http"
RUN_AS = 10001
# Secrets the pods need but no build contains: name -> the example that documents them.
EXTERNAL_SECRETS = {"agentstate-mongodb": "base/mongodb-secret.example.yaml"}
# The sidecar's defaults (sidecar/src/config.rs), for env vars a manifest leaves unset.
DEFAULT_BACKLOG_BYTES_MAX = 256 * 1024 * 1024
# The memory budget (sidecar/src/memory_budget.rs): the backlog, cache and thread cache
# bounds together fit in this share of the container's memory limit; those not given are
# sized to it by these weights, within these floors and the 256 MiB default.
BOUNDS_PERCENT = 50
BOUND_ENVS = ["AGENTSTATE_BACKLOG_BYTES_MAX", "AGENTSTATE_CACHE_BYTES_MAX", "AGENTSTATE_THREAD_CACHE_BYTES_MAX"]
BOUND_WEIGHTS = [2, 2, 1]
BOUND_FLOORS = [64 * 1024, 1024 * 1024, 1024 * 1024]
DEFAULT_WAL_SEGMENT_BYTES_MAX = 64 * 1024 * 1024
DEFAULT_SHUTDOWN_GRACE_MS = 10_000
# What the pod's grace period must leave after the sidecar's drain (agent stop, exit).
GRACE_MARGIN_S = 5

# The sidecar's metrics contract: name -> type. Alerts and dashboard may use no others.
CONTRACT_METRICS = {
    "agentstate_backlog_bytes": "gauge",
    "agentstate_backlog_bytes_max": "gauge",
    "agentstate_backlog_agents": "gauge",
    "agentstate_backlog_oldest_age_seconds": "gauge",
    "agentstate_flush_batches_total": "counter",
    "agentstate_flush_duration_seconds": "histogram",
    "agentstate_backend_errors_total": "counter",
    "agentstate_wal_bytes": "gauge",
    "agentstate_wal_segments": "gauge",
    "agentstate_wal_fsync_duration_seconds": "histogram",
    "agentstate_conflicts_total": "counter",
    "agentstate_recovery_runs_total": "counter",
    "agentstate_ready": "gauge",
    "agentstate_requests_total": "counter",
    "agentstate_request_duration_seconds": "histogram",
    "agentstate_transitions_total": "counter",
    "agentstate_validation_failures_total": "counter",
    "agentstate_cache_entries": "gauge",
    "agentstate_storage_bytes": "gauge",
}
# Metrics from elsewhere that the alerts may use.
EXTERNAL_METRICS = {"kube_pod_init_container_status_restarts_total": "kube-state-metrics"}

# --- JSON Schemas for the CRD kinds -------------------------------------------------------
# Transcribed from the Prometheus Operator's CRDs (monitoring.coreos.com_podmonitors.yaml,
# monitoring.coreos.com_prometheusrules.yaml), limited to the fields these manifests use and
# closed with additionalProperties: false, which is what `kubectl apply` (server-side
# strict field validation) does with an unknown field.
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": DNS_SUBDOMAIN, "maxLength": 253},
        "namespace": {"type": "string"},
        "labels": STR_MAP,
        "annotations": STR_MAP,
    },
}
LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": STR_MAP,
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "operator"],
                "additionalProperties": False,
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PodMonitor"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": OBJECT_META,
            "spec": {
                "type": "object",
                "required": ["selector"],
                "additionalProperties": False,
                "properties": {
                    "selector": LABEL_SELECTOR,
                    "namespaceSelector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "any": {"type": "boolean"},
                            "matchNames": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "jobLabel": {"type": "string"},
                    "podMetricsEndpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": {"type": "string", "pattern": DURATION},
                                "scrapeTimeout": {"type": "string", "pattern": DURATION},
                                "honorLabels": {"type": "boolean"},
                            },
                        },
                    },
                },
            },
        },
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": OBJECT_META,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "interval": {"type": "string", "pattern": DURATION},
                                "limit": {"type": "integer"},
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["expr"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "alert": {"type": "string"},
                                            "record": {"type": "string"},
                                            "expr": {"type": ["string", "integer"]},
                                            "for": {"type": "string", "pattern": DURATION},
                                            "keep_firing_for": {"type": "string", "pattern": DURATION},
                                            "labels": STR_MAP,
                                            "annotations": STR_MAP,
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
    },
}


class Checks:
    """Collects failures so one run reports all of them."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def fail(self, where: str, message: str) -> None:
        # An overlay's build repeats its base's objects: report their problems once.
        if f"{where}: {message}" not in self.failures:
            self.failures.append(f"{where}: {message}")

    def expect(self, cond: bool, where: str, message: str) -> bool:
        if not cond:
            self.fail(where, message)
        return cond

    def section(self, title: str, before: int) -> None:
        new = len(self.failures) - before
        print(f"{'ok  ' if new == 0 else 'FAIL'} {title}" + (f" ({new} problems)" if new else ""))


def load_yaml_docs(path: Path) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


class Build:
    """kustomize's output for one kustomization."""

    def __init__(self, name: str, objects: list[dict]) -> None:
        self.name = name
        self.objects = objects

    def find(self, kind: str, name: str) -> dict | None:
        for obj in self.objects:
            if obj.get("kind") == kind and obj.get("metadata", {}).get("name") == name:
                return obj
        return None

    def of_kind(self, *kinds: str) -> list[dict]:
        return [o for o in self.objects if o.get("kind") in kinds]

    def where(self, obj: dict) -> str:
        return f"k8s/{self.name}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def rendered_path(workdir: Path, kustomization: str) -> Path:
    """Where check.sh writes `kubectl kustomize k8s/<kustomization>`."""
    return workdir / "rendered" / f"{kustomization.replace('/', '_')}.yaml"


def load_builds(c: Checks, workdir: Path) -> dict[str, Build]:
    builds = {}
    for k in KUSTOMIZATIONS:
        path = rendered_path(workdir, k)
        objects = []
        if c.expect(path.is_file(), f"k8s/{k}", "not rendered (kubectl kustomize failed: see above)"):
            objects = load_yaml_docs(path)
        builds[k] = Build(k, objects)
    return builds


# --- helpers -------------------------------------------------------------------------------
def selector_matches(sel: dict | None, labels: dict) -> bool:
    if sel is None:
        return False
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


QUANTITY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def quantity_bytes(q: str | int) -> int:
    s = str(q)
    for suffix, mult in QUANTITY.items():
        if s.endswith(suffix):
            return int(float(s[: -len(suffix)]) * mult)
    return int(float(s))


def memory_bounds(limit: int, given: list[str | None]) -> list[int]:
    """The backlog, cache and thread cache bounds the sidecar sets under a memory limit:
    those given as they are, the others sized to what is left of the budget (as
    Budget::fit in sidecar/src/memory_budget.rs)."""
    asked = [int(g) if g else None for g in given]
    left = max(0, limit // 100 * BOUNDS_PERCENT - sum(a for a in asked if a is not None))
    weights = sum(w for a, w in zip(asked, BOUND_WEIGHTS) if a is None) or 1
    return [
        a if a is not None else min(max(left // weights * w, floor), DEFAULT_BACKLOG_BYTES_MAX)
        for a, w, floor in zip(asked, BOUND_WEIGHTS, BOUND_FLOORS)
    ]


def env_map(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


def env_value(container: dict, name: str) -> str | None:
    e = env_map(container).get(name)
    return None if e is None else e.get("value")


def config_rs_env_names(c: Checks) -> set[str] | None:
    path = REPO / "sidecar/src/config.rs"
    if not c.expect(path.is_file(), "sidecar/src/config.rs", "missing: the AGENTSTATE_* env names are read from it"):
        return None
    return set(re.findall(r'"(AGENTSTATE_[A-Z0-9_]+)"', path.read_text()))


def workloads(b: Build) -> list[dict]:
    return b.of_kind("Deployment", "StatefulSet")


def sidecar_of(pod_spec: dict) -> dict | None:
    for ctr in pod_spec.get("initContainers", []):
        if ctr.get("name") == SIDECAR:
            return ctr
    return None


def port_number(ctr: dict, name: str) -> int | None:
    for p in ctr.get("ports", []):
        if p.get("name") == name:
            return p.get("containerPort")
    return None


# --- checks --------------------------------------------------------------------------------
def check_kustomizations_known(c: Checks) -> None:
    found = sorted(str(p.parent.relative_to(K8S)) for p in K8S.rglob("kustomization.yaml"))
    c.expect(found == sorted(KUSTOMIZATIONS), "k8s/validate.py",
             f"KUSTOMIZATIONS {sorted(KUSTOMIZATIONS)} differs from the kustomizations under k8s/ {found}")


def check_files_accounted(c: Checks) -> None:
    # The paths kustomization.yaml files name (kustomize itself fails on one that is missing;
    # this catches the other way round: a file nothing lists).
    listed = set()
    for kfile in K8S.rglob("kustomization.yaml"):
        k = yaml.safe_load(kfile.read_text()) or {}
        paths = list(k.get("resources", []))
        paths += [p["path"] for p in k.get("patches", []) if "path" in p]
        paths += [f.rpartition("=")[2] for g in k.get("configMapGenerator", []) for f in g.get("files", [])]
        listed |= {kfile.resolve()} | {(kfile.parent / p).resolve() for p in paths}
    for p in sorted(K8S.rglob("*")):
        if p.is_dir() or "__pycache__" in p.parts:
            continue
        r = str(p.relative_to(K8S))
        c.expect(p.resolve() in listed or r in NON_RESOURCES, f"k8s/{r}",
                 "not listed by any kustomization and not a known non-resource (add it to a "
                 "kustomization or to NON_RESOURCES in k8s/validate.py)")


def check_security(c: Checks, where: str, ctx: dict | None, pod_level: bool) -> None:
    if not c.expect(ctx is not None, where, "no securityContext"):
        return
    c.expect(ctx.get("runAsNonRoot") is True, where, "runAsNonRoot must be true")
    c.expect(ctx.get("runAsUser") == RUN_AS and ctx.get("runAsGroup") == RUN_AS, where, f"runAsUser/runAsGroup must be {RUN_AS} (the sidecar image's USER; one uid per pod)")
    c.expect((ctx.get("seccompProfile") or {}).get("type") == "RuntimeDefault", where, "seccompProfile must be RuntimeDefault")
    if not pod_level:
        c.expect(ctx.get("readOnlyRootFilesystem") is True, where, "readOnlyRootFilesystem must be true")
        c.expect(ctx.get("allowPrivilegeEscalation") is False, where, "allowPrivilegeEscalation must be false")
        c.expect((ctx.get("capabilities") or {}).get("drop") == ["ALL"] and not (ctx.get("capabilities") or {}).get("add"),
                 where, "capabilities must drop ALL and add none")
        c.expect(not ctx.get("privileged"), where, "privileged must not be set")


def check_pod(c: Checks, b: Build, wl: dict, env_names: set[str] | None) -> None:
    where = b.where(wl)
    spec = wl["spec"]
    tmpl = spec["template"]
    pod = tmpl["spec"]
    labels = tmpl.get("metadata", {}).get("labels", {})
    c.expect(selector_matches(spec.get("selector"), labels), where, "selector does not match the pod template's labels")
    c.expect(labels.get("agentstate-sidecar") == "true", where, "pod template lacks the label agentstate-sidecar: \"true\" (NetworkPolicy, PodMonitor)")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        c.expect(not pod.get(flag), where, f"{flag} must not be set")
    c.expect(pod.get("automountServiceAccountToken") is False, where, "automountServiceAccountToken must be false (nothing in the pod uses the API)")
    check_security(c, f"{where} pod securityContext", pod.get("securityContext"), pod_level=True)

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claim_names = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    for vname in claim_names:
        c.expect(vname not in volumes, where, f"volume {vname} is both a pod volume and a volumeClaimTemplate")
    for v in volumes.values():
        if "configMap" in v:
            cm = b.find("ConfigMap", v["configMap"]["name"])
            if c.expect(cm is not None, where, f"volume {v['name']}: ConfigMap {v['configMap']['name']} is not in the build"):
                for item in v["configMap"].get("items", []):
                    c.expect(item["key"] in cm.get("data", {}), where, f"volume {v['name']}: key {item['key']} not in ConfigMap")
        if "secret" in v:
            c.fail(where, f"volume {v['name']}: secret volumes are not expected here")

    containers = pod.get("containers", [])
    inits = pod.get("initContainers", [])
    for ctr in inits + containers:
        cw = f"{where} container {ctr['name']}"
        check_security(c, f"{cw} securityContext", ctr.get("securityContext"), pod_level=False)
        c.expect("limits" in ctr.get("resources", {}) and "memory" in ctr["resources"]["limits"], cw, "needs a memory limit")
        c.expect("memory" in ctr.get("resources", {}).get("requests", {}), cw, "needs a memory request")
        for m in ctr.get("volumeMounts", []):
            c.expect(m["name"] in volumes or m["name"] in claim_names, cw, f"mounts volume {m['name']}, which the pod does not have")
        for e in ctr.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                check_secret_ref(c, b, cw, ref)
            ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
            if ref:
                cm = b.find("ConfigMap", ref["name"])
                c.expect(cm is not None and ref["key"] in cm.get("data", {}), cw, f"env {e['name']}: ConfigMap key {ref['name']}/{ref['key']} not in the build")
        port_names = {p.get("name") for p in ctr.get("ports", [])}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = (ctr.get(probe) or {}).get("httpGet")
            if get and isinstance(get.get("port"), str):
                c.expect(get["port"] in port_names, cw, f"{probe} uses port {get['port']!r}, which the container does not declare")

    sc = sidecar_of(pod)
    if not c.expect(sc is not None, where, f"no init container named {SIDECAR}"):
        return
    sw = f"{where} sidecar"
    c.expect(sc.get("restartPolicy") == "Always", sw, "must be a native sidecar: restartPolicy: Always in initContainers")
    c.expect(sc.get("args") == ["serve"] and "command" not in sc, sw, "must run the image's entrypoint with args [serve]")
    http = port_number(sc, SIDECAR_PORT_NAME)
    c.expect(http is not None, sw, f"must declare a port named {SIDECAR_PORT_NAME}")
    for probe, path in (("startupProbe", "/healthz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = (sc.get(probe) or {}).get("httpGet") or {}
        c.expect(get.get("path") == path and get.get("port") == SIDECAR_PORT_NAME, sw,
                 f"{probe} must be GET {path} on port {SIDECAR_PORT_NAME}")

    env = env_map(sc)
    if env_names is not None:
        for n in env:
            if n.startswith("AGENTSTATE_"):
                c.expect(n in env_names, sw, f"env {n} is not read by the sidecar (not in sidecar/src/config.rs)")
    listen = env_value(sc, "AGENTSTATE_LISTEN") or "127.0.0.1:7700"
    c.expect(listen.rsplit(":", 1)[-1] == str(http), sw, f"AGENTSTATE_LISTEN {listen} is not on the {SIDECAR_PORT_NAME} port {http}")
    c.expect(not listen.startswith("127."), sw, "listening on loopback only: the kubelet's probes and Prometheus could not connect")
    mounts = {m["mountPath"]: m for m in sc.get("volumeMounts", [])}
    data_dir = env_value(sc, "AGENTSTATE_DATA_DIR")
    if c.expect(data_dir in mounts, sw, f"AGENTSTATE_DATA_DIR {data_dir} is not a mounted volume (the root filesystem is read-only)"):
        c.expect(not mounts[data_dir].get("readOnly"), sw, "the data dir is mounted read-only")
    config = env_value(sc, "AGENTSTATE_CONFIG")
    if config:
        d, _, fname = config.rpartition("/")
        m = mounts.get(d)
        vol = volumes.get(m["name"]) if m else None
        if c.expect(vol is not None and "configMap" in vol, sw, f"AGENTSTATE_CONFIG {config}: {d} is not a ConfigMap mount"):
            cm = b.find("ConfigMap", vol["configMap"]["name"])
            c.expect(cm is not None and fname in cm.get("data", {}), sw, f"AGENTSTATE_CONFIG {config}: no key {fname} in the ConfigMap")
    c.expect("AGENTSTATE_MONGODB_URI" in env, sw, "AGENTSTATE_MONGODB_URI unset: the sidecar would keep state in its embedded store on the WAL volume")

    grace_ms = int(env_value(sc, "AGENTSTATE_SHUTDOWN_GRACE_MS") or DEFAULT_SHUTDOWN_GRACE_MS)
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    c.expect(tgps >= grace_ms / 1000 + GRACE_MARGIN_S, where,
             f"terminationGracePeriodSeconds {tgps} leaves less than {GRACE_MARGIN_S} s beyond the sidecar's {grace_ms} ms drain")
    backlog = int(env_value(sc, "AGENTSTATE_BACKLOG_BYTES_MAX") or DEFAULT_BACKLOG_BYTES_MAX)
    segment = int(env_value(sc, "AGENTSTATE_WAL_SEGMENT_BYTES_MAX") or DEFAULT_WAL_SEGMENT_BYTES_MAX)
    mem = sc.get("resources", {}).get("limits", {}).get("memory")
    limit = env_value(sc, "AGENTSTATE_MEMORY_LIMIT_BYTES") or (quantity_bytes(mem) if mem else None)
    if limit:
        bounds = memory_bounds(int(limit), [env_value(sc, e) for e in BOUND_ENVS])
        share = int(limit) // 100 * BOUNDS_PERCENT
        given = ", ".join(f"{e}={b}" for e, b in zip(BOUND_ENVS, bounds))
        c.expect(sum(bounds) <= share, sw,
                 f"the in-memory bounds ({given}) add up to {sum(bounds)} bytes, past {BOUNDS_PERCENT}% of the "
                 f"memory limit {limit} ({share}): the sidecar would be OOM-killed under load")
        backlog = bounds[0]
    # The WAL holds the backlog plus the open segment and one being released.
    wal_bound = backlog + 2 * segment
    wal_mount = mounts.get(data_dir) if data_dir else None
    if wal_mount:
        vol = volumes.get(wal_mount["name"])
        size = None
        if vol and "emptyDir" in vol:
            size = vol["emptyDir"].get("sizeLimit")
            c.expect(size is not None, sw, "the WAL emptyDir needs a sizeLimit")
        for t in spec.get("volumeClaimTemplates", []):
            if t["metadata"]["name"] == wal_mount["name"]:
                size = t["spec"]["resources"]["requests"]["storage"]
        if size is not None:
            c.expect(quantity_bytes(size) >= wal_bound, sw, f"WAL volume {size} is smaller than the WAL's bound ({wal_bound} bytes)")

    for ctr in containers:
        url = env_value(ctr, "AGENTSTATE_URL")
        if url is not None:
            c.expect(url == f"http://127.0.0.1:{http}", f"{where} container {ctr['name']}", f"AGENTSTATE_URL {url} is not the sidecar on loopback port {http}")


def check_secret_ref(c: Checks, b: Build, where: str, ref: dict) -> None:
    name, key = ref["name"], ref["key"]
    secret = b.find("Secret", name)
    if secret is None and name in EXTERNAL_SECRETS:
        docs = load_yaml_docs(K8S / EXTERNAL_SECRETS[name])
        secret = next((d for d in docs if d.get("kind") == "Secret" and d["metadata"]["name"] == name), None)
        c.expect(secret is not None, where, f"{EXTERNAL_SECRETS[name]} does not define Secret {name}")
    if not c.expect(secret is not None, where, f"Secret {name} is neither in the build nor a documented external Secret"):
        return
    keys = set(secret.get("data", {})) | set(secret.get("stringData", {}))
    c.expect(key in keys, where, f"Secret {name} has no key {key}")


def check_network_policies(c: Checks, b: Build) -> None:
    policies = b.of_kind("NetworkPolicy")
    for wl in workloads(b):
        labels = wl["spec"]["template"]["metadata"]["labels"]
        sc = sidecar_of(wl["spec"]["template"]["spec"])
        if sc is None:
            continue
        port = port_number(sc, SIDECAR_PORT_NAME)
        selecting = [p for p in policies if selector_matches(p["spec"]["podSelector"], labels)
                     and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])]
        c.expect(selecting, b.where(wl), "no NetworkPolicy selects the pod: the sidecar's unauthenticated API is open to the cluster")
        for p in selecting:
            for i, rule in enumerate(p["spec"].get("ingress", [])):
                ports = rule.get("ports")
                opens = ports is None or any(
                    q.get("port") in (None, port, SIDECAR_PORT_NAME)
                    or (isinstance(q.get("port"), int) and q.get("endPort") and q["port"] <= port <= q["endPort"])
                    for q in ports)
                if not opens:
                    continue
                peers = rule.get("from")
                c.expect(bool(peers) and all("namespaceSelector" in peer and "ipBlock" not in peer for peer in peers),
                         f"{b.where(p)} ingress[{i}]",
                         f"opens the sidecar's port {port} to peers other than selected namespaces")


def check_statefulset_matches_deployment(c: Checks, base: Build, overlay: Build) -> None:
    dep = base.find("Deployment", "greeter-agent")
    sts = overlay.find("StatefulSet", "greeter-agent")
    if not (c.expect(dep is not None, "k8s/base", "no Deployment greeter-agent")
            and c.expect(sts is not None, "k8s/overlays/persistent-wal", "no StatefulSet greeter-agent")):
        return
    c.expect(overlay.find("Deployment", "greeter-agent") is None, "k8s/overlays/persistent-wal", "the Deployment is still in the build")
    where = "k8s/overlays/persistent-wal/statefulset.yaml"
    claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
    tmpl = copy.deepcopy(dep["spec"]["template"])
    tmpl["spec"]["volumes"] = [v for v in tmpl["spec"]["volumes"] if v["name"] not in claims]
    if tmpl != sts["spec"]["template"]:
        a = json.dumps(tmpl, indent=1, sort_keys=True).splitlines()
        z = json.dumps(sts["spec"]["template"], indent=1, sort_keys=True).splitlines()
        diff = "\n".join(list(difflib.unified_diff(a, z, "deployment", "statefulset", lineterm="", n=1))[:30])
        c.fail(where, "pod template differs from the base Deployment's (beyond the WAL volume):\n" + diff)
    c.expect(sts["spec"]["selector"] == dep["spec"]["selector"], where, "selector differs from the Deployment's")
    c.expect(claims == {"wal"}, where, "expected one volumeClaimTemplate, `wal`")
    svc = overlay.find("Service", sts["spec"].get("serviceName", ""))
    c.expect(svc is not None and svc["spec"].get("clusterIP") == "None", "k8s/overlays/persistent-wal",
             "spec.serviceName must name a headless Service in the build")


def check_pod_monitor(c: Checks, monitoring: Build, workload_builds: list[Build]) -> None:
    pms = monitoring.of_kind("PodMonitor")
    if not c.expect(len(pms) == 1, "k8s/monitoring", "expected one PodMonitor"):
        return
    pm = pms[0]
    endpoints = pm["spec"].get("podMetricsEndpoints", [])
    for b in workload_builds:
        for wl in workloads(b):
            labels = wl["spec"]["template"]["metadata"]["labels"]
            where = f"{monitoring.where(pm)} (against {b.where(wl)})"
            c.expect(selector_matches(pm["spec"]["selector"], labels), where, "PodMonitor selector does not match the pod")
            sc = sidecar_of(wl["spec"]["template"]["spec"])
            for ep in endpoints:
                c.expect(sc is not None and port_number(sc, ep.get("port", "")) is not None, where,
                         f"endpoint port {ep.get('port')!r} is not a port of the sidecar")
                c.expect(ep.get("path") == "/metrics", where, "endpoint path must be /metrics")


def check_agent_types(c: Checks) -> None:
    path = K8S / "base/agent-types.toml"
    where = "k8s/base/agent-types.toml"
    try:
        import tomllib
    except ImportError:
        c.fail(where, "needs Python >= 3.11 (tomllib) to check")
        return
    try:
        doc = tomllib.loads(path.read_text())
    except Exception as e:  # noqa: BLE001 - report any parse error as a failure
        c.fail(where, f"not valid TOML: {e}")
        return
    # The same rules as AgentTypesFile::parse in sidecar/src/config.rs (deny_unknown_fields).
    c.expect(not (set(doc) - {"strict", "agent_types"}), where, f"unknown top-level keys {sorted(set(doc) - {'strict', 'agent_types'})}")
    types = doc.get("agent_types", {})
    for want in ("greeter", "haiku", "git_assistant"):
        c.expect(want in types, where, f"agent type {want} (one of the example agents) is missing")
    for name, t in types.items():
        tw = f"{where} [agent_types.{name}]"
        c.expect(not (set(t) - {"initial_state", "states", "transitions", "state_schemas"}), tw, "unknown keys")
        states = t.get("states", [])
        c.expect(isinstance(states, list) and states and len(set(states)) == len(states), tw, "states must be a non-empty list without repeats")
        c.expect(t.get("initial_state") in states, tw, f"initial_state {t.get('initial_state')!r} is not in its states")
        for tr in t.get("transitions", []):
            c.expect(set(tr) == {"from", "to", "trigger"}, tw, f"transition {tr} needs exactly from, to, trigger")
            for s in (tr.get("from"), tr.get("to")):
                c.expect(s in states, tw, f"transition {tr.get('from')} -> {tr.get('to')} names undeclared state {s!r}")
        pairs = [(tr.get("from"), tr.get("trigger")) for tr in t.get("transitions", [])]
        c.expect(len(set(pairs)) == len(pairs), tw, "two transitions share a from state and trigger")
        for state, schema in t.get("state_schemas", {}).items():
            c.expect(state in states, tw, f"state_schemas has undeclared state {state!r}")
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as e:
                c.fail(tw, f"state_schemas.{state} is not a valid JSON Schema: {e.message}")


def groups_of_alerts() -> list:
    return yaml.safe_load((K8S / "monitoring/alerts.yaml").read_text())["groups"]


METRIC_RE = re.compile(r"\b((?:agentstate|kube)_[a-zA-Z0-9_:]*)")


def metric_names(expr: str) -> set[str]:
    names = set()
    for m in METRIC_RE.findall(expr):
        for suffix in ("_bucket", "_sum", "_count"):
            base = m[: -len(suffix)]
            if m.endswith(suffix) and CONTRACT_METRICS.get(base) == "histogram":
                m = base
        names.add(m)
    return names


def check_metric_names(c: Checks, used: dict[str, set[str]]) -> None:
    for where, names in used.items():
        for n in sorted(names):
            c.expect(n in CONTRACT_METRICS or n in EXTERNAL_METRICS, where, f"metric {n} is not one of the sidecar's documented metrics")
    src = REPO / "sidecar/src"
    if (src / "metrics.rs").exists() or (src / "metrics").is_dir():
        text = "\n".join(p.read_text() for p in src.rglob("*.rs"))
        for n in sorted(set().union(*used.values())):
            if n in CONTRACT_METRICS:
                c.expect(f'"{n}"' in text, "sidecar/src", f"metric {n} (used by alerts or dashboard) does not appear in the sidecar's source")


def check_rules(c: Checks, monitoring: Build, workdir: Path) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    groups = groups_of_alerts()
    where = "k8s/monitoring/alerts.yaml"
    names = set()
    for g in groups:
        for r in g.get("rules", []):
            if "alert" not in r:
                continue
            aw = f"{where} {r['alert']}"
            c.expect(r["alert"] not in names, aw, "alert name used twice")
            names.add(r["alert"])
            c.expect(r.get("labels", {}).get("severity") in ("critical", "warning", "info"), aw, "severity label must be critical, warning or info")
            for a in ("summary", "description", "runbook"):
                c.expect(bool(r.get("annotations", {}).get(a)), aw, f"missing annotation {a}")
            used.setdefault(where, set()).update(metric_names(str(r["expr"])))
    rules = monitoring.of_kind("PrometheusRule")
    if c.expect(len(rules) == 1, "k8s/monitoring", "expected one PrometheusRule"):
        c.expect(rules[0]["spec"]["groups"] == groups, "k8s/monitoring/prometheusrule.yaml",
                 "differs from alerts.yaml: run `.venv-k8s/bin/python k8s/validate.py sync-rules`")
    # alerts.yaml without annotations, beside alerts_test.yaml, for `promtool test rules`.
    stripped = copy.deepcopy(groups)
    for g in stripped:
        for r in g.get("rules", []):
            r.pop("annotations", None)
    tests = workdir / "rules-test"
    tests.mkdir(parents=True, exist_ok=True)
    (tests / "alerts.yaml").write_text(yaml.safe_dump({"groups": stripped}, sort_keys=False))
    (tests / "alerts_test.yaml").write_text((K8S / "monitoring/alerts_test.yaml").read_text())
    return used


def check_dashboard(c: Checks, workdir: Path) -> dict[str, set[str]]:
    path = K8S / "monitoring/dashboard.json"
    where = "k8s/monitoring/dashboard.json"
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        c.fail(where, f"not valid JSON: {e}")
        return {}
    if not c.expect(isinstance(d, dict) and isinstance(d.get("panels"), list) and d["panels"], where, "needs a non-empty `panels` array"):
        return {}
    c.expect(isinstance(d.get("schemaVersion"), int) and d["schemaVersion"] >= 36, where, "schemaVersion must be an integer >= 36")
    c.expect(bool(d.get("uid")) and bool(d.get("title")), where, "needs uid and title")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("DS_PROMETHEUS")
    c.expect(ds is not None and ds.get("type") == "datasource" and ds.get("query") == "prometheus", where,
             "needs a datasource variable DS_PROMETHEUS of type prometheus")
    ids, cells, rules, used = set(), {}, [], set()
    for p in d["panels"]:
        pw = f"{where} panel {p.get('id')} {p.get('title')!r}"
        c.expect(isinstance(p.get("id"), int) and p["id"] not in ids, pw, "panel ids must be unique integers")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if c.expect(all(isinstance(g.get(k), int) for k in "hwxy") and g["x"] + g["w"] <= 24, pw, "gridPos needs integer h, w, x, y within 24 columns"):
            hit = {cells[(x, y)] for x in range(g["x"], g["x"] + g["w"])
                   for y in range(g["y"], g["y"] + g["h"]) if (x, y) in cells}
            c.expect(not hit, pw, f"overlaps panels {sorted(hit)}")
            cells.update({(x, y): p.get("id") for x in range(g["x"], g["x"] + g["w"])
                          for y in range(g["y"], g["y"] + g["h"])})
        if p.get("type") == "row":
            continue
        c.expect((p.get("datasource") or {}).get("uid") == "${DS_PROMETHEUS}", pw, "datasource must be ${DS_PROMETHEUS}")
        targets = p.get("targets", [])
        c.expect(bool(targets), pw, "no queries")
        refs = [t.get("refId") for t in targets]
        c.expect(len(set(refs)) == len(refs), pw, "refIds must be unique")
        for t in targets:
            expr = t.get("expr", "")
            c.expect((t.get("datasource") or {}).get("uid") == "${DS_PROMETHEUS}", pw, f"query {t.get('refId')}: datasource must be ${{DS_PROMETHEUS}}")
            used |= metric_names(expr)
            # Grafana's variables -> values PromQL accepts, so promtool can parse the query.
            concrete = (expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
                        .replace("$__range", "1h").replace("$namespace", ".*").replace("$pod", ".*"))
            if c.expect("$" not in concrete, pw, f"query {t.get('refId')} uses an unknown variable: {expr}"):
                rules.append({"record": f"dashboard:panel_{p.get('id')}:{t.get('refId')}", "expr": concrete})
    (workdir / "dashboard-queries.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, sort_keys=False))
    return {where: used}


def check_crds(c: Checks, b: Build) -> int:
    n = 0
    for obj in b.objects:
        schema = CRD_SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
        if schema is None:
            continue
        n += 1
        for e in jsonschema.Draft202012Validator(schema).iter_errors(obj):
            c.fail(b.where(obj), f"{'.'.join(str(x) for x in e.absolute_path) or '(root)'}: {e.message}")
    return n


def write_core_objects(b: Build, out: Path) -> int:
    """Objects of core kinds, one per file, for the kubernetes-validate CLI."""
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for obj in b.objects:
        if (obj.get("apiVersion"), obj.get("kind")) in CRD_SCHEMAS:
            continue
        n += 1
        (out / f"{n:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml").write_text(yaml.safe_dump(obj, sort_keys=False))
    return n


def check_dockerfile(c: Checks, base: Build) -> None:
    path = REPO / "Dockerfile"
    if not c.expect(path.is_file(), "Dockerfile", "missing"):
        return
    text = path.read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    exposes = re.findall(r"^EXPOSE\s+(\d+)", text, re.M)
    c.expect(bool(users) and users[-1].split(":")[0] == str(RUN_AS), "Dockerfile", f"final USER must be {RUN_AS} (the pods' runAsUser)")
    for wl in workloads(base):
        sc = sidecar_of(wl["spec"]["template"]["spec"])
        if sc:
            c.expect(str(port_number(sc, SIDECAR_PORT_NAME)) in exposes, "Dockerfile", "EXPOSE does not list the sidecar's port")


def cmd_check(workdir: Path) -> int:
    c = Checks()

    def step(title: str, fn) -> None:
        """Runs one group of checks; a crash on malformed input is a failure, not the end."""
        mark = len(c.failures)
        try:
            extra = fn()
        except Exception as e:  # noqa: BLE001 - report and go on to the other groups
            c.fail(title, f"check crashed on malformed input ({type(e).__name__}: {e}); "
                   "the schema validation below probably names the cause")
            extra = None
        c.section(title + (f" ({extra})" if extra else ""), mark)

    builds = load_builds(c, workdir)

    def kustomizations() -> None:
        check_kustomizations_known(c)
        check_files_accounted(c)
    step("every kustomization is known here; every file under k8s/ is listed or accounted for", kustomizations)

    def write_rendered() -> str:
        counts = [f"{k}: {write_core_objects(b, workdir / 'core' / k.replace('/', '_'))}" for k, b in builds.items()]
        ex = workdir / "core" / "examples"
        ex.mkdir(parents=True, exist_ok=True)
        (ex / "mongodb-secret.example.yaml").write_text((K8S / "base/mongodb-secret.example.yaml").read_text())
        ncrd = sum(check_crds(c, b) for b in builds.values())
        return f"core objects for kubernetes-validate: {', '.join(counts)}, examples: 1; CRD objects checked: {ncrd}"
    step("core objects written; PodMonitor/PrometheusRule valid against their CRD schemas", write_rendered)

    def pods() -> None:
        env_names = config_rs_env_names(c)
        for k in WORKLOAD_BUILDS:
            for wl in workloads(builds[k]):
                check_pod(c, builds[k], wl, env_names)
            check_network_policies(c, builds[k])
    step("pod templates: native sidecar, security contexts, probes, volumes, references, env, "
         "timing, sizes; network policies", pods)
    step("persistent-wal StatefulSet runs the base Deployment's pod template",
         lambda: check_statefulset_matches_deployment(c, builds["base"], builds["overlays/persistent-wal"]))
    step("PodMonitor selects every sidecar pod on its metrics port",
         lambda: check_pod_monitor(c, builds["monitoring"], [builds[k] for k in WORKLOAD_BUILDS]))
    step("agent-types.toml follows the sidecar's config rules", lambda: check_agent_types(c))

    used: dict[str, set[str]] = {}
    step("alerts.yaml: names, severities, annotations; prometheusrule.yaml carries the same rules",
         lambda: used.update(check_rules(c, builds["monitoring"], workdir)))
    step("dashboard.json: structure, data source, ids, layout", lambda: used.update(check_dashboard(c, workdir)))
    step("metric names in alerts and dashboard are the sidecar's", lambda: check_metric_names(c, used))
    step("Dockerfile USER and EXPOSE match the pods", lambda: check_dockerfile(c, builds["base"]))

    for f in c.failures:
        print(f"  - {f}", file=sys.stderr)
    return 1 if c.failures else 0


class BlockDumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, s: str):
    style = "|" if "\n" in s else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


BlockDumper.add_representer(str, _str)

RULE_HEADER = """\
# GENERATED from alerts.yaml by `.venv-k8s/bin/python k8s/validate.py sync-rules`: edit
# alerts.yaml and regenerate; `bash k8s/check.sh` fails while the two differ.
#
# The alerts for the Prometheus Operator. Create it where your Prometheus's ruleSelector and
# ruleNamespaceSelector find it; with kube-prometheus-stack that usually means adding a
# `release: <helm release>` label (RULE_LABELS in k8s/validate.py) or ruleSelector: {}.
"""
RULE_LABELS = {"app.kubernetes.io/name": "agentstate"}


def cmd_sync_rules() -> int:
    obj = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "agentstate", "labels": dict(RULE_LABELS)},
        "spec": {"groups": groups_of_alerts()},
    }
    text = RULE_HEADER + yaml.dump(obj, Dumper=BlockDumper, sort_keys=False, width=100, allow_unicode=True)
    out = K8S / "monitoring/prometheusrule.yaml"
    out.write_text(text)
    assert yaml.safe_load(text)["spec"]["groups"] == obj["spec"]["groups"], "round trip changed the rules"
    print(f"wrote {out.relative_to(REPO)}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("check")
    p.add_argument("--workdir", required=True, type=Path)
    sub.add_parser("sync-rules")
    a = ap.parse_args()
    if a.cmd == "check":
        return cmd_check(a.workdir)
    return cmd_sync_rules()


if __name__ == "__main__":
    sys.exit(main())
