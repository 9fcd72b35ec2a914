"""Kafka clusters of subscriptions: from the environment and the flags to ``NodeConfig``, and
from a cluster's client properties to the keyword arguments aiokafka's consumer is built with."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from runtime import cli
from runtime.config import NodeConfig
from runtime.subscriptions.spec import KafkaCluster, parse_cluster_property

# A self-signed CA certificate (CN "Cairn test CA"), only ever loaded as a trust anchor.
TEST_CA = Path(__file__).resolve().parents[2] / "support" / "test_ca.pem"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``CAIRN_*`` variable of the machine leaks into the parsed flags."""
    for name in [n for n in os.environ if n.startswith("CAIRN_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def _config(*flags: str) -> NodeConfig:
    return cli._config(cli._parser().parse_args(["server", *flags]))


def test_server_flag_defaults_are_the_node_config_defaults(clean_env: pytest.MonkeyPatch) -> None:
    # One home for each default: every field the flags set comes out as NodeConfig has it.
    assert _config() == NodeConfig(data_dir=Path("cairn-data"))


def test_a_bad_integer_in_the_environment_is_a_usage_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CAIRN_CLUSTER_SESSION_TIMEOUT_MS", "soon")
    with pytest.raises(SystemExit) as exited:
        _config()
    assert exited.value.code == 2  # argparse's usage error, not a traceback


def test_clusters_and_properties_come_from_the_environment(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("CAIRN_KAFKA_CLUSTERS", "a=h1:9092,b=h2:9092;h3:9092")
    clean_env.setenv(
        "CAIRN_KAFKA_CLUSTER_PROPERTIES",
        "a:security_protocol=SASL_SSL; a:sasl_mechanism=PLAIN;b:client_id=cairn-b",
    )
    config = _config()
    assert config.kafka_clusters == {"a": "h1:9092", "b": "h2:9092,h3:9092"}
    assert config.kafka_cluster_properties == {
        "a": {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"},
        "b": {"client_id": "cairn-b"},
    }


def test_a_flag_wins_over_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CAIRN_KAFKA_CLUSTERS", "a=h1:9092")
    clean_env.setenv("CAIRN_KAFKA_CLUSTER_PROPERTIES", "a:client_id=from-env")
    config = _config(
        "--kafka-cluster", "a=h9:9092", "--kafka-cluster-property", "a:client_id=from-flag"
    )
    assert config.kafka_clusters == {"a": "h9:9092"}
    assert config.kafka_cluster_properties == {"a": {"client_id": "from-flag"}}


@pytest.mark.parametrize(
    ("env", "flags", "expected"),
    [
        ({}, ["--kafka-cluster-property", "b:client_id=x"], "unknown cluster(s) ['b']"),
        ({"CAIRN_KAFKA_CLUSTER_PROPERTIES": "b:client_id=x"}, [], "unknown cluster(s) ['b']"),
        ({}, ["--kafka-cluster-property", "a:group_id=x"], "unknown Kafka client property"),
        ({}, ["--kafka-cluster-property", "a:security_protocol=TLS"], "security_protocol must"),
        ({}, ["--kafka-cluster-property", "client_id=x"], "expected CLUSTER:KEY=VALUE"),
    ],
)
def test_bad_cluster_properties_stop_startup_with_the_reason(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], flags: list[str], expected: str
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        _config("--kafka-cluster", "a=h1:9092", *flags)
    message = str(exited.value.code)
    assert message.startswith("cairn: ") and expected in message, message


def test_client_options_are_aiokafka_keyword_arguments() -> None:
    properties = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "ada",
        "sasl_plain_password": "secret",
        "client_id": "cairn-a",
        "ssl_cafile": str(TEST_CA),
    }
    options = KafkaCluster("a", "h1:9092,h2:9092", properties).client_options()
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": "h1:9092,h2:9092",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "ada",
        "sasl_plain_password": "secret",
        "client_id": "cairn-a",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    subjects = [str(cert["subject"]) for cert in context.get_ca_certs()]
    assert ["('commonName', 'Cairn test CA')" in s for s in subjects] == [True], subjects


def test_a_missing_ca_file_fails_when_the_context_is_built(tmp_path: Path) -> None:
    cluster = KafkaCluster("a", "h1:9092", {"ssl_cafile": str(tmp_path / "missing.pem")})
    with pytest.raises(FileNotFoundError):
        cluster.client_options()


def test_plaintext_clusters_get_no_ssl_context() -> None:
    assert KafkaCluster("a", "h1:9092").client_options() == {"bootstrap_servers": "h1:9092"}


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
async def test_tls_without_a_ca_file_trusts_the_system_cas(protocol: str) -> None:
    """aiokafka refuses SSL without a context: the consumer is built as the node builds it."""
    properties = {"security_protocol": protocol}
    if protocol == "SASL_SSL":
        properties |= {"sasl_mechanism": "PLAIN", "sasl_plain_username": "a"}
        properties |= {"sasl_plain_password": "b"}
    options = KafkaCluster("a", "h1:9092", properties).client_options()
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    consumer = AIOKafkaConsumer(group_id="g", enable_auto_commit=False, **options)
    await consumer.stop()  # never started: nothing to reach


async def test_the_consumer_accepts_every_property() -> None:
    """Each property name is a keyword argument of aiokafka's consumer, as parsed from flags."""
    properties: dict[str, str] = {}
    for item in (
        "a:security_protocol=SASL_SSL",
        "a:sasl_mechanism=PLAIN",
        "a:sasl_plain_username=ada",
        "a:sasl_plain_password=secret",
        "a:sasl_kerberos_service_name=kafka",
        "a:sasl_kerberos_domain_name=example.org",
        "a:client_id=cairn-a",
        f"a:ssl_cafile={TEST_CA}",
    ):
        _, key, value = parse_cluster_property(item)
        properties[key] = value
    options = KafkaCluster("a", "h1:9092", properties).client_options()
    consumer = AIOKafkaConsumer(group_id="g", **options)
    await consumer.stop()
