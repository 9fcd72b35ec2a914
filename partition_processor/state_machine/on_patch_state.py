"""``PatchState``: replace an object's state, never under a running invocation of it.

With the object's lock free the patch applies now; with it held, the patch waits in the object's
inbox behind the invocations already queued, and ``lifecycle.release_lock`` applies it when it
reaches the head (before the next queued invocation starts). So a handler never sees its state
change between two of its own reads, and the patch's place in the queue is its place in the log.

A patch applies once: the log may hold its record twice (DESIGN §10), and a copy landing after
other records of the object (say, counter adds) would replace the state again and undo them. Each
object keeps the ids of the patches it queued or decided (``SeenPatches``) and drops a record
whose id is there. A decided id is kept for ``PATCH_DEDUP_RETENTION_MS`` of record timestamps
after its decision (a queued one until it is decided), so replaying the log decides the same way;
a copy appended later than that applies again (as every copy did before patches had ids).
"""

from __future__ import annotations

from partition_processor import codes
from partition_processor.actions import Action, RespondToIngress
from partition_processor.commands import PatchState
from partition_processor.journal import Failure, Result, Success
from partition_processor.tables import Transaction, state_version
from partition_processor.values import QueuedPatch, SeenPatch, SeenPatches

VERSION_MISMATCH = "state version mismatch"

# How long (in record timestamps) a decided patch's id keeps a repeated record of it out. Far
# longer than any producer retry or ingress timeout; a constant of the state machine, not a node
# setting, because every replica and every replay must decide the same way.
PATCH_DEDUP_RETENTION_MS = 24 * 60 * 60 * 1000


def on_patch_state(
    tx: Transaction, now_ms: int, command: PatchState, actions: list[Action]
) -> bool:
    service, key = command.service, command.key
    if command.patch_id:
        seen = next(
            (p for p in tx.seen_patches(service, key).patches if p.patch_id == command.patch_id),
            None,
        )
        if seen is not None and (seen.outcome is None or _retained(seen, now_ms)):
            # A repeated record. Still queued: the first copy answers when it applies (the
            # copies share their sink). Decided: tell this copy's sink what the first one got.
            if seen.outcome is not None and command.sink is not None:
                actions.append(RespondToIngress(command.sink, "", seen.outcome))
            return False
    patch = QueuedPatch(command.new_state, command.version, command.sink, command.patch_id)
    lock = tx.lock(service, key)
    if lock is not None:
        tx.enqueue_inbox(service, key, patch, lock)
        _remember(tx, service, key, SeenPatch(command.patch_id, now_ms), now_ms)
        return True
    return apply_patch(tx, service, key, patch, now_ms, actions)


def apply_patch(
    tx: Transaction,
    service: str,
    key: str,
    patch: QueuedPatch,
    now_ms: int,
    actions: list[Action],
) -> bool:
    """Apply a patch that reached the object (lock free): check the version, replace the state,
    answer the sink. Returns whether the state was replaced."""
    current = tx.object_state(service, key)
    outcome: Result
    if patch.version is not None and patch.version != state_version(current.items()):
        outcome = Failure(codes.STATE_VERSION_MISMATCH, VERSION_MISMATCH)
    else:
        tx.replace_state(service, key, current, patch.new_state)
        outcome = Success(state_version(patch.new_state.items()).encode())
    _remember(tx, service, key, SeenPatch(patch.patch_id, now_ms, outcome), now_ms)
    if patch.sink is not None:
        # (No invocation: the sink's request id is all the ingress needs to find the request.)
        actions.append(RespondToIngress(patch.sink, "", outcome))
    return isinstance(outcome, Success)


def _retained(seen: SeenPatch, now_ms: int) -> bool:
    return now_ms - seen.at_ms <= PATCH_DEDUP_RETENTION_MS


def _remember(tx: Transaction, service: str, key: str, patch: SeenPatch, now_ms: int) -> None:
    """Record (or replace) ``patch`` in the object's seen patches, dropping decided ones past
    the retention (queued ones stay until decided: their copies must not queue again)."""
    if not patch.patch_id:
        return  # a record from before patches had ids: nothing to recognise a copy by
    kept = [
        p
        for p in tx.seen_patches(service, key).patches
        if p.patch_id != patch.patch_id and (p.outcome is None or _retained(p, now_ms))
    ]
    tx.put_seen_patches(service, key, SeenPatches([*kept, patch]))
