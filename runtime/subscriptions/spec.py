"""What a subscription says: its source topic, its sink handler, its options, and the Kafka
clusters a node can read from. Everything here is checked when a subscription is created, so a
stored subscription is always one a node can run."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from runtime.metadata import HandlerInfo, Registry, ServiceInfo, Subscription

SOURCE_SCHEME = "kafka://"
SINK_SCHEME = "service://"
OFFSET_RESET = "auto.offset.reset"
MAX_IN_FLIGHT = "max.in.flight.records"
_MAX_IN_FLIGHT_LIMIT = 100_000
# Kafka's legal topic names
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Client properties passed to aiokafka per cluster (SASL / TLS); anything else is refused at
# startup rather than silently ignored.
_STRING_PROPERTIES = {
    "security_protocol",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "sasl_kerberos_service_name",
    "sasl_kerberos_domain_name",
    "client_id",
}
_SSL_PROPERTIES = {"ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"}
_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


class SubscriptionError(Exception):
    """A subscription request that cannot be honoured: ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class KafkaCluster(msgspec.Struct, frozen=True):
    """A Kafka cluster a node reads subscriptions from."""

    name: str
    bootstrap: str
    properties: dict[str, str] = {}

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for an aiokafka client of this cluster."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap}
        ssl = {k: v for k, v in self.properties.items() if k in _SSL_PROPERTIES}
        options.update({k: v for k, v in self.properties.items() if k in _STRING_PROPERTIES})
        # aiokafka refuses SSL / SASL_SSL without a context: without ssl_* properties the
        # context trusts the system's CAs (a broker with a public certificate).
        if ssl or options.get("security_protocol") in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=ssl.get("ssl_cafile"),
                certfile=ssl.get("ssl_certfile"),
                keyfile=ssl.get("ssl_keyfile"),
                password=ssl.get("ssl_password"),
            )
        return options


def parse_clusters(spec: str) -> dict[str, str]:
    """``"a=h1:9092,b=h2:9092;h3:9092"`` → ``{"a": "h1:9092", "b": ...}``.

    Clusters are separated by commas; a bootstrap list of several brokers separates them with
    ``;`` or ``|`` (turned into commas for aiokafka).
    """
    clusters: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        clusters.update([parse_cluster(item)])
    return clusters


def parse_cluster(item: str) -> tuple[str, str]:
    """``NAME=BOOTSTRAP`` → (name, bootstrap); ``ValueError`` with the reason otherwise."""
    name, sep, bootstrap = item.partition("=")
    name, bootstrap = name.strip(), bootstrap.strip()
    if not sep or not _NAME.fullmatch(name) or not bootstrap:
        raise ValueError(f"expected NAME=HOST:PORT, got {item!r}")
    return name, re.sub(r"[;|]", ",", bootstrap)


def parse_cluster_property(item: str) -> tuple[str, str, str]:
    """``NAME:KEY=VALUE`` → (cluster, key, value), for the keys aiokafka understands here."""
    head, sep, value = item.partition("=")
    cluster, colon, key = head.partition(":")
    if not sep or not colon or not cluster or not key:
        raise ValueError(f"expected CLUSTER:KEY=VALUE, got {item!r}")
    if key not in _STRING_PROPERTIES | _SSL_PROPERTIES:
        known = ", ".join(sorted(_STRING_PROPERTIES | _SSL_PROPERTIES))
        raise ValueError(f"unknown Kafka client property {key!r} (known: {known})")
    if key == "security_protocol" and value not in _SECURITY_PROTOCOLS:
        raise ValueError(f"security_protocol must be one of {', '.join(_SECURITY_PROTOCOLS)}")
    return cluster, key, value


def parse_source(source: str) -> tuple[str, str]:
    """``kafka://CLUSTER/TOPIC`` → (cluster, topic)."""
    if not source.startswith(SOURCE_SCHEME):
        raise SubscriptionError(400, f"source must be kafka://CLUSTER/TOPIC, got {source!r}")
    cluster, sep, topic = source[len(SOURCE_SCHEME) :].partition("/")
    if not sep or not _NAME.fullmatch(cluster) or not _TOPIC.fullmatch(topic):
        raise SubscriptionError(400, f"source must be kafka://CLUSTER/TOPIC, got {source!r}")
    return cluster, topic


def parse_sink(sink: str) -> tuple[str, str]:
    """``service://SERVICE/HANDLER`` → (service, handler)."""
    if not sink.startswith(SINK_SCHEME):
        raise SubscriptionError(400, f"sink must be service://SERVICE/HANDLER, got {sink!r}")
    service, sep, handler = sink[len(SINK_SCHEME) :].partition("/")
    if not sep or not service or not handler or "/" in handler:
        raise SubscriptionError(400, f"sink must be service://SERVICE/HANDLER, got {sink!r}")
    return service, handler


def resolve_sink(registry: Registry, sink: str) -> tuple[ServiceInfo, HandlerInfo]:
    """The registered handler a sink names; 404 if unknown, 400 if it cannot take events."""
    service_name, handler_name = parse_sink(sink)
    service = registry.service(service_name)
    if service is None:
        raise SubscriptionError(404, f"service {service_name!r} not found")
    handler = service.handlers.get(handler_name)
    if handler is None:
        raise SubscriptionError(404, f"handler {service_name}/{handler_name} not found")
    if service.service_type == "virtual_object" and handler.kind == "shared":
        # Restate refuses these too: events of a key must run in order, one at a time.
        raise SubscriptionError(
            400,
            f"{service_name}/{handler_name} is a shared handler of a virtual object; "
            "a subscription needs an exclusive handler",
        )
    return service, handler


def validate_options(options: dict[str, str], default_max_in_flight: int) -> dict[str, str]:
    """The options with defaults filled in; 400 for an unknown option or a bad value."""
    reset = options.get(OFFSET_RESET, "latest")
    if reset not in ("earliest", "latest"):
        raise SubscriptionError(
            400, f"{OFFSET_RESET} must be 'earliest' or 'latest', not {reset!r}"
        )
    raw = options.get(MAX_IN_FLIGHT, str(default_max_in_flight))
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_IN_FLIGHT_LIMIT:
        raise SubscriptionError(
            400, f"{MAX_IN_FLIGHT} must be an integer from 1 to {_MAX_IN_FLIGHT_LIMIT}, not {raw!r}"
        )
    unknown = sorted(set(options) - {OFFSET_RESET, MAX_IN_FLIGHT})
    if unknown:
        raise SubscriptionError(
            400, f"unknown option(s) {unknown}: supported are {OFFSET_RESET}, {MAX_IN_FLIGHT}"
        )
    return {OFFSET_RESET: reset, MAX_IN_FLIGHT: str(int(raw))}


def check_new(
    registry: Registry,
    clusters: dict[str, KafkaCluster],
    source: str,
    sink: str,
    options: dict[str, str],
    default_max_in_flight: int,
) -> dict[str, str]:
    """Validate a new subscription; returns its options with defaults filled in."""
    cluster, _ = parse_source(source)
    if cluster not in clusters:
        known = ", ".join(sorted(clusters)) or "none configured (--kafka-cluster NAME=BOOTSTRAP)"
        raise SubscriptionError(404, f"unknown Kafka cluster {cluster!r} (known: {known})")
    resolve_sink(registry, sink)
    validated = validate_options(options, default_max_in_flight)
    for existing in registry.subscriptions():
        if existing.source == source and existing.sink == sink:
            raise SubscriptionError(
                409, f"{existing.id} already subscribes {sink} to {source}; delete it first"
            )
    return validated


def subscription_json(subscription: Subscription) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "source": subscription.source,
        "sink": subscription.sink,
        "options": subscription.options,
    }
