"""``PatchState``: replace an object's state, never under a running invocation of it.

With the object's lock free the patch applies now; with it held, the patch waits in the object's
inbox behind the invocations already queued, and ``lifecycle.release_lock`` applies it when it
reaches the head (before the next queued invocation starts). So a handler never sees its state
change between two of its own reads, and the patch's place in the queue is its place in the log.
"""

from __future__ import annotations

from partition_processor import codes
from partition_processor.actions import Action, RespondToIngress
from partition_processor.commands import PatchState
from partition_processor.journal import Failure, Result, Success
from partition_processor.tables import Transaction, state_version
from partition_processor.values import QueuedPatch

VERSION_MISMATCH = "state version mismatch"


def on_patch_state(tx: Transaction, command: PatchState, actions: list[Action]) -> bool:
    patch = QueuedPatch(command.new_state, command.version, command.sink)
    if tx.lock(command.service, command.key) is not None:
        tx.enqueue_inbox(command.service, command.key, patch)
        return True
    return apply_patch(tx, command.service, command.key, patch, actions)


def apply_patch(
    tx: Transaction, service: str, key: str, patch: QueuedPatch, actions: list[Action]
) -> bool:
    """Apply a patch that reached the object (lock free): check the version, replace the state,
    answer the sink. Returns whether the state was replaced."""
    current = state_version(tx.object_state(service, key).items())
    outcome: Result
    if patch.version is not None and patch.version != current:
        outcome = Failure(codes.STATE_VERSION_MISMATCH, VERSION_MISMATCH)
    else:
        tx.replace_state(service, key, patch.new_state)
        outcome = Success(state_version(patch.new_state.items()).encode())
    if patch.sink is not None:
        # (No invocation: the sink's request id is all the ingress needs to find the request.)
        actions.append(RespondToIngress(patch.sink, "", outcome))
    return isinstance(outcome, Success)
