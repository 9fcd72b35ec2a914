"""The log seam (DESIGN §3): the contract and its two implementations."""

from runtime.log.base import Log, LogError, LogRecord, ReadHint
from runtime.log.embedded import LocalLog
from runtime.log.kafka import KafkaLog

__all__ = ["KafkaLog", "LocalLog", "Log", "LogError", "LogRecord", "ReadHint"]
