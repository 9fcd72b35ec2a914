"""``AnnounceLeader``: the first announcement of a higher epoch wins the partition."""

from __future__ import annotations

import msgspec

from partition_processor.commands import AnnounceLeader
from partition_processor.tables import Transaction


def on_announce_leader(tx: Transaction, command: AnnounceLeader) -> bool:
    if command.epoch <= tx.fsm.leader_epoch:
        return False
    tx.fsm = msgspec.structs.replace(tx.fsm, leader_epoch=command.epoch, leader_node=command.node)
    return True
