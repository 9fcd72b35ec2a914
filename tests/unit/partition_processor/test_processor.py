from partition_processor.actions import StartInvocation
from partition_processor.commands import AnnounceLeader, JournalAppend
from partition_processor.journal import Run
from partition_processor.processor import LogEntry, PartitionProcessor
from tests.unit.partition_processor.env import Env


def test_applied_lsn_is_committed_and_old_records_are_skipped() -> None:
    env = Env()
    env.invoke("a")
    applied = env.processor.fsm.applied_lsn
    assert applied == env.lsn - 1
    payload = env.record(JournalAppend(1, Run("x")))  # type: ignore[arg-type]
    outcome = env.processor.apply_batch([LogEntry(0, payload)])
    assert outcome.applied_lsn == applied


def test_actions_are_kept_only_while_leader() -> None:
    env = Env()
    other = PartitionProcessor(env.store, 0, "other-node/9")
    outcome = other.apply_batch([LogEntry(env.lsn, env.record(AnnounceLeader(99, "other-node/9")))])
    assert outcome.is_leader and outcome.leader_epoch == 99
    env.lsn += 1
    assert env.invoke("a") == []  # env's node is no longer the leader
    assert other.invocations_to_resume() == [StartInvocation("a", 1)]


def test_undecodable_record_is_skipped_not_fatal() -> None:
    env = Env()
    actions = env.apply_raw(b"\x00garbage")
    assert actions == []
    assert env.invoke("a") == [StartInvocation("a", 1)]
