"""deploy/ and the Dockerfile agree with the real CLI (issue 9 item 6).

Every file in deploy/ parses; every `cairn server` flag and CAIRN_ variable used exists in
`cairn server --help`; every command is a real cairn subcommand or an importable `python -m sdk`
app; and the ports agree: binds, container ports, published ports, Services, probes, Prometheus
targets, the Kafka bootstrap and the registration URIs. No Docker engine is needed.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from runtime.config import split_bind
from runtime.internal import advertised_host, read_cluster_secret
from tests.unit.deploy.checks import (
    CAIRN_IMAGE,
    DEPLOY,
    DOCKERFILE,
    ROOT,
    Cli,
    Container,
    Dockerfile,
    check_argv,
    deploy_files,
    effective_argv,
    flatten,
    hostports,
    load_yaml,
    port_of,
)

COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
BINDS = ("INGRESS", "ADMIN", "INTERNAL")


def _binds(c: Container, defaults: dict[str, str]) -> dict[str, int | None]:
    """ingress/admin/internal -> the port a node binds."""
    return {n.lower(): port_of(c.setting(f"--{n.lower()}-bind", defaults)) for n in BINDS}


@pytest.fixture(scope="module")
def cli() -> Cli:
    return Cli.load()


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile.parse(DOCKERFILE.read_text())


def _k8s() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in load_yaml(path)]


def _of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


# --- every file ------------------------------------------------------------------------------


def test_every_deploy_file_parses() -> None:
    files = deploy_files()
    assert {p.relative_to(DEPLOY).as_posix() for p in files} >= {
        "compose.yaml",
        "prometheus.yml",
        "k8s/statefulset.yaml",
        "k8s/service.yaml",
        "k8s/configmap.yaml",
        "k8s/pdb.yaml",
        "k8s/sdk.yaml",
    }
    for path in files:
        # (JSON is YAML too: the Grafana dashboard, grafana/cairn.json, parses the same way.)
        assert path.suffix in (".yaml", ".yml", ".json"), f"{path}: not a YAML or JSON file"
        assert load_yaml(path), f"{path} is empty"
    kinds = {d["kind"] for d in _k8s()}
    assert kinds >= {"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget", "Deployment"}


# --- the image -------------------------------------------------------------------------------


def test_the_image_installs_the_project_and_runs_cairn(cli: Cli, dockerfile: Dockerfile) -> None:
    assert dockerfile.base.startswith("python:3.11-slim"), dockerfile.base
    assert dockerfile.entrypoint == ["cairn"]
    problems = check_argv(
        Container("Dockerfile", [*dockerfile.entrypoint, *dockerfile.cmd], dockerfile.env), cli
    )
    assert not problems, problems
    # The console script it runs is the project's (pip install . creates it).
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["cairn"] == "runtime.cli:main"
    # Every package the project installs is copied in.
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    assert packages <= dockerfile.copied, packages - dockerfile.copied
    # EXPOSE matches the binds the image sets (the internal port of a cluster node too).
    binds = {port_of(dockerfile.env.get(f"CAIRN_{n}_BIND")) for n in BINDS}
    assert None not in binds and binds == set(dockerfile.exposed), (binds, dockerfile.exposed)


# --- compose ---------------------------------------------------------------------------------


def _compose_services() -> dict[str, Any]:
    (compose,) = load_yaml(COMPOSE)
    services: dict[str, Any] = compose["services"]
    return services


def _compose_containers(dockerfile: Dockerfile) -> dict[str, Container]:
    """The compose services that run the Cairn image (built here or named cairn:...)."""
    found = {}
    for name, service in _compose_services().items():
        if "build" not in service and not CAIRN_IMAGE.match(str(service.get("image", ""))):
            continue
        argv = effective_argv(
            dockerfile.entrypoint, dockerfile.cmd, service.get("entrypoint"), service.get("command")
        )
        env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        ports = [int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])]
        ports += [int(p) for p in service.get("expose", [])]
        found[name] = Container(f"deploy/compose.yaml service {name}", argv, env, ports)
    return found


def _servers(containers: dict[str, Container]) -> dict[str, Container]:
    return {n: c for n, c in containers.items() if c.argv[:2] == ["cairn", "server"]}


def test_compose_commands_flags_and_variables_exist(cli: Cli, dockerfile: Dockerfile) -> None:
    containers = _compose_containers(dockerfile)
    assert len(_servers(containers)) == 3, sorted(containers)
    problems = flatten(check_argv(c, cli) for c in containers.values())
    assert not problems, "\n".join(problems)


def test_compose_ports_agree(dockerfile: Dockerfile) -> None:
    services = _compose_services()
    containers = _compose_containers(dockerfile)
    servers = _servers(containers)
    problems: list[str] = []
    admin = {}
    for name, c in servers.items():
        binds = _binds(c, dockerfile.env)
        ingress, admin[name], internal = binds["ingress"], binds["admin"], binds["internal"]
        if set(c.ports) != set(binds.values()):
            problems.append(f"{c.where}: publishes or exposes {c.ports}, binds {binds}")
        # The internal port is for the peers on the compose network, never the host's.
        published = [int(str(p).split(":")[-1].split("/")[0]) for p in services[name]["ports"]]
        if internal in published:
            problems.append(f"{c.where}: the internal port {internal} is published on the host")
        if internal not in [int(p) for p in services[name].get("expose", [])]:
            problems.append(f"{c.where}: the internal port {internal} is not exposed to peers")
        probe = " ".join(services[name].get("healthcheck", {}).get("test", []))
        for _host, port in hostports(probe.split("'")[1] if "'" in probe else ""):
            if port not in (ingress, admin[name]):
                problems.append(f"{c.where}: healthcheck on port {port}, not a bound port")
        # Every node shares the same Kafka: the bootstrap names kafka services' listeners.
        for host, port in hostports(c.setting("--kafka-bootstrap", dockerfile.env) or ""):
            env = services.get(host, {}).get("environment", {})
            if f"PLAINTEXT://:{port}" not in str(env.get("KAFKA_LISTENERS", "")):
                problems.append(f"{c.where}: bootstrap {host}:{port} is no Kafka listener")
    kafka = [n for n, s in services.items() if str(s.get("image", "")).startswith("apache/kafka")]
    assert len(kafka) == 3, kafka
    for name in kafka:
        env = services[name]["environment"]
        assert "controller" in env["KAFKA_PROCESS_ROLES"], f"{name}: not KRaft"
        voters = dict(v.split("@") for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        assert str(env["KAFKA_NODE_ID"]) in voters, name
        for host, port in hostports(",".join(voters.values())):
            assert host in kafka and f"CONTROLLER://:{port}" in env["KAFKA_LISTENERS"], host
        probe = services[name]["healthcheck"]["test"]
        [(_, port)] = hostports(probe[probe.index("--bootstrap-server") + 1])
        assert f"PLAINTEXT://:{port}" in env["KAFKA_LISTENERS"], (name, probe)
    for name, service in services.items():
        needs = service.get("depends_on", [])
        assert set(needs) <= set(services), (
            f"{name} depends on unknown {set(needs) - set(services)}"
        )
    # Prometheus scrapes every node's admin port, and nothing else.
    (prometheus,) = load_yaml(DEPLOY / "prometheus.yml")
    targets = {
        t
        for job in prometheus["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]
        for t in static["targets"]
    }
    assert targets == {f"{n}:{admin[n]}" for n in servers}, (targets, admin)
    mount = " ".join(services["prometheus"]["volumes"])
    assert "./prometheus.yml:" in mount, mount
    # The registration names the endpoint's port and a node's admin port.
    sdk = [n for n, c in containers.items() if c.argv[:3] == ["python", "-m", "sdk"]]
    assert len(sdk) == 1, sdk
    sdk_port = int(containers[sdk[0]].flag("--port") or 0)
    assert sdk_port in containers[sdk[0]].ports
    registrations = [c for c in containers.values() if c.argv[1:3] == ["deployments", "register"]]
    assert registrations
    for c in registrations:
        [(host, port)] = hostports(c.argv[3])
        if (host, port) != (sdk[0], sdk_port):
            problems.append(
                f"{c.where}: registers {host}:{port}, the endpoint is {sdk[0]}:{sdk_port}"
            )
        [(host, port)] = hostports(c.flag("--admin") or "")
        if admin.get(host) != port:
            problems.append(f"{c.where}: --admin {host}:{port} is no node's admin port")
    assert not problems, "\n".join(problems)


# --- kubernetes ------------------------------------------------------------------------------


def _pod_containers(
    docs: list[dict[str, Any]], dockerfile: Dockerfile
) -> list[tuple[Any, Any, Container]]:
    """(workload, container spec, Container) of every container running the Cairn image."""
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in _of_kind(docs, "ConfigMap")}
    found = []
    for workload in docs:
        if workload["kind"] not in ("StatefulSet", "Deployment", "Job"):
            continue
        for spec in workload["spec"]["template"]["spec"]["containers"]:
            if not CAIRN_IMAGE.match(spec["image"]):
                continue
            env: dict[str, str] = {}
            for source in spec.get("envFrom", []):
                name = source["configMapRef"]["name"]
                assert name in configmaps, f"{workload['metadata']['name']}: no ConfigMap {name}"
                env.update({k: str(v) for k, v in configmaps[name].items()})
            env.update({e["name"]: str(e.get("value", "")) for e in spec.get("env", [])})
            argv = effective_argv(
                dockerfile.entrypoint, dockerfile.cmd, spec.get("command"), spec.get("args")
            )
            ports = [p["containerPort"] for p in spec.get("ports", [])]
            where = f"deploy/k8s {workload['kind']} {workload['metadata']['name']}"
            found.append((workload, spec, Container(where, argv, env, ports)))
    return found


def test_k8s_commands_flags_and_variables_exist(cli: Cli, dockerfile: Dockerfile) -> None:
    containers = [c for _, _, c in _pod_containers(_k8s(), dockerfile)]
    assert any(c.argv[:2] == ["cairn", "server"] for c in containers)
    assert any(c.argv[:3] == ["python", "-m", "sdk"] for c in containers)
    problems = flatten(check_argv(c, cli) for c in containers)
    assert not problems, "\n".join(problems)


def _named_port(spec: dict[str, Any], port: int | str) -> int | None:
    if isinstance(port, int):
        return port if port in [p["containerPort"] for p in spec.get("ports", [])] else None
    return next((p["containerPort"] for p in spec.get("ports", []) if p.get("name") == port), None)


def test_k8s_ports_services_and_selectors_agree(dockerfile: Dockerfile) -> None:
    docs = _k8s()
    problems: list[str] = []
    services = {d["metadata"]["name"]: d for d in _of_kind(docs, "Service")}
    # service name -> {port: container port}, through selector and targetPort
    routes: dict[str, dict[int, int]] = {}
    pods = _pod_containers(docs, dockerfile)
    for workload, spec, c in pods:
        labels = workload["spec"]["template"].get("metadata", {}).get("labels", {})
        selector = workload["spec"].get("selector", {}).get("matchLabels", labels)
        if any(labels.get(k) != v for k, v in selector.items()):
            problems.append(f"{c.where}: its selector does not match its pod labels")
        if c.argv[:2] == ["cairn", "server"]:
            binds = _binds(c, dockerfile.env)
            if set(c.ports) != set(binds.values()):
                problems.append(f"{c.where}: container ports {c.ports}, binds {binds}")
            annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
            admin = port_of(c.setting("--admin-bind", dockerfile.env))
            if annotations.get("prometheus.io/port") != str(admin):
                problems.append(f"{c.where}: prometheus.io/port is not the admin port {admin}")
            headless = services.get(workload["spec"].get("serviceName", ""))
            if headless is None or headless["spec"].get("clusterIP") != "None":
                problems.append(f"{c.where}: serviceName is not a headless Service")
            else:  # peers reach the internal port through the headless Service's names
                internal = [
                    p
                    for p in headless["spec"]["ports"]
                    if _named_port(spec, p.get("targetPort", p["port"])) == binds["internal"]
                ]
                if [p["port"] for p in internal] != [binds["internal"]]:
                    problems.append(
                        f"{c.where}: the headless Service does not route port "
                        f"{binds['internal']} to the internal port {binds['internal']}"
                    )
            for name, service in services.items():  # clients never reach the internal port
                selects = all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
                if (
                    selects
                    and service is not headless
                    and any(
                        _named_port(spec, p.get("targetPort", p["port"])) == binds["internal"]
                        for p in service["spec"]["ports"]
                    )
                ):
                    problems.append(f"Service {name} exposes the internal port of {c.where}")
        if c.argv[:3] == ["python", "-m", "sdk"] and [int(c.flag("--port") or 0)] != c.ports:
            problems.append(f"{c.where}: --port {c.flag('--port')}, container ports {c.ports}")
        for probe in ("readinessProbe", "livenessProbe"):
            for action in ("httpGet", "tcpSocket"):
                port = spec.get(probe, {}).get(action, {}).get("port")
                if port is not None and _named_port(spec, port) is None:
                    problems.append(f"{c.where}: {probe} port {port} is not a container port")
        for name, service in services.items():
            wanted = service["spec"]["selector"]
            if all(labels.get(k) == v for k, v in wanted.items()):
                for p in service["spec"]["ports"]:
                    target = _named_port(spec, p.get("targetPort", p["port"]))
                    if target is None:
                        problems.append(
                            f"Service {name}: targetPort {p.get('targetPort')} "
                            f"is not a port of {c.where}"
                        )
                    else:
                        routes.setdefault(name, {})[p["port"]] = target
    assert set(routes) == set(services), f"Services selecting no pod: {set(services) - set(routes)}"
    # Every URL a container is given reaches a Service port.
    for _, _, c in pods:
        for arg in c.argv:
            for host, port in hostports(arg) if arg.startswith("http") else ():
                if port not in routes.get(host.split(".")[0], {}):
                    problems.append(f"{c.where}: {arg} reaches no port of a Service")
    for pdb in _of_kind(docs, "PodDisruptionBudget"):
        wanted = pdb["spec"]["selector"]["matchLabels"]
        if not any(
            w["kind"] == "StatefulSet"
            and all(
                w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in wanted.items()
            )
            for w in docs
        ):
            problems.append(f"PodDisruptionBudget {pdb['metadata']['name']} selects no node")
    assert not problems, "\n".join(problems)


# --- the checks themselves -------------------------------------------------------------------


def test_the_checks_name_an_unknown_flag_variable_and_subcommand(cli: Cli) -> None:
    bad = Container(
        "compose service x",
        ["cairn", "server", "--cluster", "--no-such-flag", "1"],
        {"CAIRN_LOG": "kafka", "CAIRN_NO_SUCH_SETTING": "1"},
    )
    assert check_argv(bad, cli) == [
        "compose service x: unknown flag --no-such-flag (not in cairn server --help)",
        "compose service x: unknown variable CAIRN_NO_SUCH_SETTING (no matching flag in "
        "cairn server --help)",
    ]
    assert check_argv(Container("y", ["cairn", "serve"], {}), cli) == [
        "y: `cairn serve` is not a cairn subcommand"
    ]
    sdk = check_argv(Container("z", ["python", "-m", "sdk", "examples.nope:app"], {}), cli)
    assert len(sdk) == 1 and "examples.nope:app" in sdk[0], sdk


def _cluster_settings(c: Container, defaults: dict[str, str]) -> tuple[str | None, ...]:
    cluster = "--cluster" in c.argv or c.env.get("CAIRN_CLUSTER", "") not in ("", "0", "false")
    return (
        c.setting("--log", defaults),
        str(cluster),
        c.setting("--kafka-bootstrap", defaults),
        c.setting("--kafka-topic-prefix", defaults),
        c.setting("--partitions", defaults),
    )


def test_the_nodes_form_one_cluster_on_kafka(dockerfile: Dockerfile) -> None:
    """Compose and k8s: every node on Kafka with --cluster, the same topics and partitions, and
    (compose) its own node name."""
    compose = _servers(_compose_containers(dockerfile))
    k8s = [
        c for _, _, c in _pod_containers(_k8s(), dockerfile) if c.argv[:2] == ["cairn", "server"]
    ]
    for nodes in (list(compose.values()), k8s):
        settings = {_cluster_settings(c, dockerfile.env) for c in nodes}
        assert len(settings) == 1, settings
        log, cluster, bootstrap, _, _ = settings.pop()
        assert (log, cluster) == ("kafka", "True") and bootstrap, (log, cluster, bootstrap)
    names = [c.setting("--node-name", dockerfile.env) for c in compose.values()]
    assert len(set(names)) == len(names) == 3, names


# --- cluster nodes: secret and advertised address ---------------------------------------------


def _cluster_node_problems(
    c: Container, defaults: dict[str, str], secret_files: set[str], reached_at: str
) -> list[str]:
    """A ``--cluster`` node names a cluster secret file that is mounted from a secret, and
    advertises the name its peers reach it at (a container binds 0.0.0.0, which names no host)."""
    if _cluster_settings(c, defaults)[1] != "True":
        return []
    problems = []
    secret = c.setting("--cluster-secret-file", defaults)
    if not secret:
        problems.append(f"{c.where}: a --cluster node without --cluster-secret-file")
    elif secret not in secret_files:
        problems.append(f"{c.where}: --cluster-secret-file {secret} is no mounted secret")
    advertised = c.setting("--advertised-address", defaults) or ""
    host, _ = split_bind(c.setting("--internal-bind", defaults) or "")
    try:
        advertised_host(advertised, host)
    except ValueError as exc:
        problems.append(f"{c.where}: {exc}")
    else:
        if advertised != reached_at:
            problems.append(f"{c.where}: advertises {advertised!r}, peers reach it at {reached_at}")
    return problems


def _secret_targets(service: dict[str, Any]) -> set[str]:
    """Where compose mounts a service's secrets (/run/secrets/NAME unless a target is given)."""
    targets = set()
    for entry in service.get("secrets", []):
        source, target = (entry, entry) if isinstance(entry, str) else (entry["source"], None)
        target = target or entry.get("target", source)
        targets.add(target if target.startswith("/") else f"/run/secrets/{target}")
    return targets


def test_every_compose_cluster_node_has_a_secret_and_advertises_its_service_name(
    dockerfile: Dockerfile,
) -> None:
    (compose,) = load_yaml(COMPOSE)
    servers = _servers(_compose_containers(dockerfile))
    problems = []
    for name, c in servers.items():
        service = compose["services"][name]
        undefined = {
            e if isinstance(e, str) else e["source"] for e in service.get("secrets", [])
        } - set(compose.get("secrets", {}))
        if undefined:
            problems.append(f"{c.where}: secrets {sorted(undefined)} are not defined")
        problems += _cluster_node_problems(c, dockerfile.env, _secret_targets(service), name)
    assert not problems, "\n".join(problems)


def _k8s_env(spec: dict[str, Any], pod: str) -> dict[str, str]:
    """A container's ``env``, with the pod name for ``metadata.name`` and ``$(VAR)`` expanded
    as the kubelet does (from the variables defined before it)."""
    env: dict[str, str] = {}
    for e in spec.get("env", []):
        field_path = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        value = pod if field_path == "metadata.name" else str(e.get("value", ""))
        env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)
    return env


def test_every_k8s_cluster_node_has_a_mounted_secret_and_advertises_its_headless_name(
    dockerfile: Dockerfile,
) -> None:
    docs = _k8s()
    secrets = {d["metadata"]["name"]: d for d in _of_kind(docs, "Secret")}
    problems: list[str] = []
    nodes = [
        (w, spec, c)
        for w, spec, c in _pod_containers(docs, dockerfile)
        if c.argv[:2] == ["cairn", "server"]
    ]
    assert nodes
    for workload, spec, c in nodes:
        pod = f"{workload['metadata']['name']}-0"
        c.env.update(_k8s_env(spec, pod))
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
        files = set()
        for mount in spec.get("volumeMounts", []):
            source = volumes.get(mount["name"], {}).get("secret")
            if source is None:
                continue
            secret = secrets.get(source["secretName"])
            if secret is None:
                problems.append(f"{c.where}: mounts Secret {source['secretName']}, not defined")
                continue
            keys = {**secret.get("data", {}), **secret.get("stringData", {})}
            files |= {f"{mount['mountPath'].rstrip('/')}/{key}" for key in keys}
        reached_at = f"{pod}.{workload['spec'].get('serviceName')}"
        problems += _cluster_node_problems(c, dockerfile.env, files, reached_at)
    assert not problems, "\n".join(problems)


def test_the_shipped_cluster_secret_is_refused_until_replaced(tmp_path: Path) -> None:
    """The Secret in deploy/k8s carries a placeholder a node refuses to start with, so nobody
    runs a cluster on a secret published in this repository."""
    values = [v for d in _of_kind(_k8s(), "Secret") for v in d.get("stringData", {}).values()]
    assert values
    for value in values:
        path = tmp_path / "secret"
        path.write_text(str(value))
        with pytest.raises(ValueError, match="at least 16 are needed"):
            read_cluster_secret(str(path))


def test_the_cluster_checks_name_a_missing_secret_and_a_wildcard_address() -> None:
    node = Container(
        "compose service n",
        ["cairn", "server", "--cluster", "--internal-bind", "0.0.0.0:5122"],
        {},
    )
    assert _cluster_node_problems(node, {}, set(), "n") == [
        "compose service n: a --cluster node without --cluster-secret-file",
        "compose service n: --internal-bind listens on the wildcard '0.0.0.0': set "
        "--advertised-address to the host name or IP address peers reach this node at",
    ]
    node.argv += ["--cluster-secret-file", "/s", "--advertised-address", "m"]
    assert _cluster_node_problems(node, {}, {"/t"}, "n") == [
        "compose service n: --cluster-secret-file /s is no mounted secret",
        "compose service n: advertises 'm', peers reach it at n",
    ]
    assert _cluster_node_problems(node, {}, {"/s"}, "m") == []
