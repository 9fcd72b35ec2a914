"""deploy/ and the Dockerfile agree with the real CLI (issue 9 item 6).

Every file in deploy/ parses; every `cairn server` flag and CAIRN_ variable used exists in
`cairn server --help`; every command is a real cairn subcommand or an importable `python -m sdk`
app; and the ports agree: binds, container ports, published ports, Services, probes, Prometheus
targets, the Kafka bootstrap and the registration URIs. No Docker engine is needed.
"""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

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
    # EXPOSE matches the binds the image sets.
    binds = {port_of(dockerfile.env.get(f"CAIRN_{n}_BIND")) for n in ("INGRESS", "ADMIN")}
    assert binds == set(dockerfile.exposed), (binds, dockerfile.exposed)


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
        ingress = port_of(c.setting("--ingress-bind", dockerfile.env))
        admin[name] = port_of(c.setting("--admin-bind", dockerfile.env))
        if set(c.ports) != {ingress, admin[name]}:
            problems.append(f"{c.where}: publishes {c.ports}, binds {ingress} and {admin[name]}")
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
            binds = {
                port_of(c.setting(f, dockerfile.env)) for f in ("--ingress-bind", "--admin-bind")
            }
            if set(c.ports) != binds:
                problems.append(f"{c.where}: container ports {c.ports}, binds {binds}")
            annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
            admin = port_of(c.setting("--admin-bind", dockerfile.env))
            if annotations.get("prometheus.io/port") != str(admin):
                problems.append(f"{c.where}: prometheus.io/port is not the admin port {admin}")
            headless = services.get(workload["spec"].get("serviceName", ""))
            if headless is None or headless["spec"].get("clusterIP") != "None":
                problems.append(f"{c.where}: serviceName is not a headless Service")
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
