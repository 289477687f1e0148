"""deploy/k8s: the workers as a StatefulSet, checked against the CLI's own parser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from stream_cd.cli import build_parser
from stream_cd.state.signing import STATE_KEY_ENV

K8S = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "kind" in doc and doc["kind"] != "Kustomization":
                found[doc["kind"], doc["metadata"]["name"]] = doc
    return found


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion in args, from the container's env."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in args]


def _env(container: dict, pod_name: str) -> dict[str, str]:
    env = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif var["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[var["name"]] = pod_name
        else:
            env[var["name"]] = "<secret>"
    return env


def _parse(argv: list[str]):
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"`stream-cd {' '.join(argv)}` does not parse (exit {exit_.code})")


def test_the_workers_are_a_statefulset_whose_pod_name_is_the_worker_id(manifests):
    sts = manifests["StatefulSet", "stream-cd-worker"]
    [container] = sts["spec"]["template"]["spec"]["containers"]
    for ordinal in range(sts["spec"]["replicas"]):
        pod = f"{sts['metadata']['name']}-{ordinal}"
        args = _parse(_expand(container["args"], _env(container, pod)))
        assert args.command == "worker" and args.worker_id == pod
        assert args.delivery == "exactly-once"  # a transactional id per pod: a restarted pod fences its predecessor
    [pod_name] = [v for v in container["env"] if v.get("valueFrom", {}).get("fieldRef")]
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "$(" + pod_name["name"] + ")" == container["args"][container["args"].index("--worker-id") + 1]
    assert sts["spec"]["serviceName"] in {name for kind, name in manifests if kind == "Service"}
    grace = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= 30  # SIGTERM finishes the batch and commits


def test_the_state_key_comes_from_a_secret_the_readme_says_how_to_make(manifests):
    [container] = manifests["StatefulSet", "stream-cd-worker"]["spec"]["template"]["spec"]["containers"]
    [key] = [v for v in container["env"] if v["name"] == STATE_KEY_ENV]
    ref = key["valueFrom"]["secretKeyRef"]
    assert f"kubectl create secret generic {ref['name']} --from-literal={ref['key']}=" in README.read_text()
    assert not any(kind == "Secret" for kind, _ in manifests)  # no key is ever committed


def test_the_metrics_port_is_scraped(manifests):
    sts = manifests["StatefulSet", "stream-cd-worker"]
    template = sts["spec"]["template"]
    [container] = template["spec"]["containers"]
    args = _parse(_expand(container["args"], _env(container, "stream-cd-worker-0")))
    [port] = [p for p in container["ports"] if p["name"] == "metrics"]
    assert port["containerPort"] == args.metrics_port
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == args.metrics_port
    assert annotations["prometheus.io/path"] == "/metrics"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    service = manifests["Service", "stream-cd-worker"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == template["metadata"]["labels"]
    assert [p["port"] for p in service["spec"]["ports"]] == [args.metrics_port]


def test_the_decisions_subscriber_parses(manifests):
    [container] = manifests["Deployment", "stream-cd-decisions"]["spec"]["template"]["spec"]["containers"]
    args = _parse(_expand(container["args"], _env(container, "x")))
    assert args.command == "decisions" and args.follow


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
