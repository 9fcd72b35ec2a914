"""The Kafka topics Cairn creates and the settings it checks on existing ones (README "Kafka").

Two kinds of topic: the log (``<prefix>.log``: Cairn trims it itself, so no time or size
retention may delete a record first) and the metadata (``<prefix>.metadata``: keyed, compacted,
the last record of each key being the current value of that fact). Both get a replication factor
of ``--kafka-replication-factor`` (lowered to the broker count on a smaller cluster) and
``min.insync.replicas = RF - 1`` (at least 1), so that ``acks=all`` survives one broker loss.

A topic that already exists is never altered: its settings are described and every unsafe one is
logged (one line each, with the fix); only a partition count other than ``--partitions`` stops the
node. Some brokers (the Tansu test broker) keep only the configs a topic was created with, or do
not answer DescribeConfigs: what is not reported is logged once as not checked (DESIGN §10).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, NoError, TopicAlreadyExistsError, for_code

from runtime.log.base import LogError

__all__ = [
    "TopicSpec",
    "ensure_topic",
    "min_insync_for",
    "new_topic",
    "replication_for",
    "topic_configs",
    "unsafe_settings",
]

_log = logging.getLogger(__name__)

# The metadata topic rolls a segment at least this often: Kafka compacts only closed segments,
# and a topic this small would otherwise keep one open segment (7 days by default) uncompacted.
METADATA_SEGMENT_MS = 3_600_000
# What "no limit" is in Kafka's retention settings.
UNLIMITED = "-1"


@dataclass(frozen=True)
class TopicSpec:
    """What a topic of Cairn must look like.

    Attributes:
        name: The topic.
        partitions: Its partition count (a mismatch on an existing topic is an error).
        compacted: The metadata topic (keyed, compacted); else the log (no retention).
        replication_factor: Wanted replicas per partition (lowered to the broker count).
        max_message_bytes: The largest record batch it must accept (None: the broker's default).
    """

    name: str
    partitions: int
    compacted: bool
    replication_factor: int
    max_message_bytes: int | None = None


def replication_for(wanted: int, brokers: int) -> int:
    """The replication factor to create with: ``wanted``, or the broker count when fewer."""
    return max(1, min(wanted, brokers))


def min_insync_for(replication: int) -> int:
    """``min.insync.replicas`` for a replication factor: RF-1, at least 1 (one broker may fail)."""
    return max(1, replication - 1)


def topic_configs(spec: TopicSpec, replication: int) -> dict[str, str]:
    """The topic configs Cairn creates ``spec`` with, on a cluster allowing ``replication``."""
    configs = {"min.insync.replicas": str(min_insync_for(replication))}
    if spec.compacted:
        configs["cleanup.policy"] = "compact"
        configs["segment.ms"] = str(METADATA_SEGMENT_MS)
    else:
        configs["cleanup.policy"] = "delete"
        configs["retention.ms"] = UNLIMITED
        configs["retention.bytes"] = UNLIMITED
    if spec.max_message_bytes is not None:
        configs["max.message.bytes"] = str(spec.max_message_bytes)
    return configs


def new_topic(spec: TopicSpec, brokers: int) -> NewTopic:
    """The CreateTopics entry for ``spec`` on a cluster of ``brokers`` brokers."""
    replication = replication_for(spec.replication_factor, brokers)
    return NewTopic(
        spec.name,
        spec.partitions,
        replication,
        topic_configs=topic_configs(spec, replication),
    )


# The configs whose values the check needs (a broker that omits one: "not checked").
def _checked_names(spec: TopicSpec) -> list[str]:
    names = ["cleanup.policy", "retention.ms", "retention.bytes", "min.insync.replicas"]
    if spec.max_message_bytes is not None:
        names.append("max.message.bytes")
    return names


def unsafe_settings(
    spec: TopicSpec, configs: dict[str, str], replicas: int, brokers: int
) -> list[str]:
    """One sentence per unsafe setting of an existing topic (empty: nothing found unsafe).

    ``configs`` holds what the broker reported; absent names are not judged here.
    """
    topic = spec.name
    problems: list[str] = []
    policy = set(configs.get("cleanup.policy", "").replace(" ", "").split(",")) - {""}
    retention_ms = configs.get("retention.ms")
    retention_bytes = configs.get("retention.bytes")
    if spec.compacted:
        if policy and "compact" not in policy:
            problems.append(
                f"topic {topic}: cleanup.policy={configs['cleanup.policy']} is not compacted, "
                "so the metadata grows forever or its retention deletes current deployments "
                "and subscriptions; set cleanup.policy=compact"
            )
        if "delete" in policy and retention_ms not in (None, UNLIMITED):
            problems.append(
                f"topic {topic}: cleanup.policy includes delete with retention.ms={retention_ms}:"
                " current metadata would be deleted; set cleanup.policy=compact"
            )
    else:
        if "compact" in policy:
            problems.append(
                f"topic {topic}: cleanup.policy={configs['cleanup.policy']} compacts the log, "
                "which holds unkeyed records (appends are refused, records lost); "
                "set cleanup.policy=delete with retention.ms=-1"
            )
        for name, value in (("retention.ms", retention_ms), ("retention.bytes", retention_bytes)):
            if value is not None and value != UNLIMITED:
                problems.append(
                    f"topic {topic}: {name}={value} deletes records Cairn has not trimmed "
                    f"(a node rebuilt later cannot replay the log); set {name}=-1"
                )
    wanted = replication_for(spec.replication_factor, brokers)
    if replicas < wanted:
        problems.append(
            f"topic {topic}: replication factor {replicas} on a {brokers}-broker cluster "
            f"(wanted {wanted}): losing a broker loses acknowledged records; reassign its "
            "partitions to more replicas"
        )
    insync = configs.get("min.insync.replicas")
    if insync is not None and insync.isdigit():
        if int(insync) > replicas:
            problems.append(
                f"topic {topic}: min.insync.replicas={insync} exceeds its {replicas} replicas: "
                f"every acks=all append fails; set min.insync.replicas={min_insync_for(replicas)}"
            )
        elif int(insync) < min_insync_for(replicas) and replicas > 1:
            problems.append(
                f"topic {topic}: min.insync.replicas={insync} with {replicas} replicas: acks=all "
                f"waits for fewer copies than it can; set min.insync.replicas="
                f"{min_insync_for(replicas)}"
            )
    limit = configs.get("max.message.bytes")
    needed = spec.max_message_bytes
    if needed is not None and limit is not None and limit.isdigit() and int(limit) < needed:
        problems.append(
            f"topic {topic}: max.message.bytes={limit} is below the {needed} bytes a record may "
            f"take (--ingress-max-body-bytes): such appends fail; set max.message.bytes={needed}"
        )
    return problems


async def ensure_topic(admin: Any, spec: TopicSpec, *, timeout_ms: int) -> None:
    """Create ``spec`` with Cairn's settings, or check those of the existing topic.

    Create first, describe second: the test broker auto-creates a topic (with its default
    partition count) when asked for the metadata of one that does not exist.

    Raises:
        LogError: The topic cannot be created, or exists with another partition count.
    """
    brokers = await _broker_count(admin)
    replication = replication_for(spec.replication_factor, brokers)
    topic = new_topic(spec, brokers)
    response = await admin.create_topics([topic], timeout_ms=timeout_ms)
    for name, code, *rest in response.topic_errors:
        error = for_code(code)
        if name != spec.name:
            continue
        if error is NoError:
            if replication < spec.replication_factor:
                _log.info(
                    "topic %s created with replication factor %d: the cluster has %d broker(s) "
                    "(--kafka-replication-factor %d)",
                    spec.name,
                    replication,
                    brokers,
                    spec.replication_factor,
                )
            return
        if error is not TopicAlreadyExistsError:
            raise LogError(f"cannot create topic {name}: {error.__name__} {rest}")
        await _check_existing(admin, spec, brokers)


async def _broker_count(admin: Any) -> int:
    """How many brokers the cluster's metadata lists (at least 1)."""
    try:
        cluster = await admin.describe_cluster()
    except KafkaError as exc:
        raise LogError(f"cannot describe the Kafka cluster: {exc!r}") from exc
    return max(1, len(cluster.get("brokers") or []))


async def _check_existing(admin: Any, spec: TopicSpec, brokers: int) -> None:
    described = await admin.describe_topics([spec.name])
    partitions: list[dict[str, Any]] = described[0]["partitions"] if described else []
    if len(partitions) != spec.partitions:
        raise LogError(
            f"topic {spec.name} has {len(partitions)} partitions, not {spec.partitions} "
            "(--partitions must match the existing topic: a topic's partition count is fixed "
            "when the cluster is created)"
        )
    replicas = min(len(p.get("replicas") or []) for p in partitions)
    configs = await _describe_configs(admin, spec)
    if configs is None:
        return
    for problem in unsafe_settings(spec, configs, replicas, brokers):
        _log.warning("unsafe Kafka setting: %s", problem)
    missing = [name for name in _checked_names(spec) if name not in configs]
    if missing:
        _log.info(
            "topic %s: the broker did not report %s; those settings are not checked",
            spec.name,
            ", ".join(missing),
        )


async def _describe_configs(admin: Any, spec: TopicSpec) -> dict[str, str] | None:
    """The topic's configs as the broker reports them (None, logged, if it does not answer)."""
    resource = ConfigResource(ConfigResourceType.TOPIC, spec.name)
    try:
        responses = await admin.describe_configs([resource])
    except KafkaError as exc:
        _log.info("topic %s: settings not checked, DescribeConfigs failed: %r", spec.name, exc)
        return None
    configs: dict[str, str] = {}
    for response in responses:
        for code, message, _type, name, entries in response.resources:
            if name != spec.name:
                continue
            if for_code(code) is not NoError:
                _log.info("topic %s: settings not checked, DescribeConfigs: %s", name, message)
                return None
            for entry in entries:
                if entry[1] is not None:
                    configs[entry[0]] = entry[1]
    return configs
