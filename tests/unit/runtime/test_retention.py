"""How long completed invocations keep their result, per handler kind and options."""

from __future__ import annotations

from runtime.metadata import DAY_MS, DEDUP_RETENTION_MS, HandlerInfo, completion_retention_ms


def test_a_workflow_run_keeps_its_result_for_the_workflow_retention() -> None:
    run = HandlerInfo("run", "workflow", workflow_retention_ms=1500, idempotency_retention_ms=9)
    assert completion_retention_ms(run, idempotent=False) == 1500
    assert completion_retention_ms(run, idempotent=True) == 1500


def test_a_workflow_run_defaults_to_a_day() -> None:
    assert completion_retention_ms(HandlerInfo("run", "workflow"), idempotent=False) == DAY_MS


def test_an_idempotent_request_keeps_its_result_for_the_idempotency_retention() -> None:
    add = HandlerInfo("add", "exclusive", idempotency_retention_ms=1000)
    assert completion_retention_ms(add, idempotent=True) == 1000
    assert completion_retention_ms(HandlerInfo("add", "exclusive"), idempotent=True) == DAY_MS


def test_other_invocations_are_kept_only_for_deduplication() -> None:
    signal = HandlerInfo("signal", "shared", workflow_retention_ms=5000)
    assert completion_retention_ms(signal, idempotent=False) == DEDUP_RETENTION_MS
