"""What ``GET /restate/health`` (ingress) and ``GET /health`` (admin) answer (DESIGN §11).

200 while the node serves every partition it leads (or, single node, owns). 503 with a JSON
reason while it starts, while it shuts down, or while a supervised task it depends on is down
or restarting: a task of a partition it owns, or a node-wide one (metadata follower, cluster
ownership). A failing task that does not affect health (a subscription consumer: the node
serves every request while a source cluster is down, and every node runs every subscription,
so a 503 would take the whole cluster out for one topic) is listed in ``tasks`` of both the
200 and the 503 body, and left out of the 503's message. A log whose broker does not answer
(``log_problems``) makes it 503 too: nothing can be logged, so nothing this node leads is served.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from runtime.supervisor import Supervisor

Phase = Literal["starting", "serving", "stopping"]

STARTING = "the node is starting"
STOPPING = "the node is shutting down"


class NodeHealth:
    def __init__(
        self,
        supervisor: Supervisor,
        owns: Callable[[int], bool],
        *,
        retry_after_s: int,
        log_problems: Callable[[], Sequence[str]] = tuple,
    ) -> None:
        """``retry_after_s`` (``NodeConfig.retry_after_s``): the Retry-After of the 503s a
        client gets while the node starts, stops or is unhealthy. ``log_problems()``: why the
        node's logs cannot be used now (an unreachable broker), empty while they can."""
        self._supervisor = supervisor
        self._owns = owns
        self._log_problems = log_problems
        self.retry_after_s = retry_after_s
        self.phase: Phase = "starting"

    def refusal(self) -> str | None:
        """Why new requests are refused now (starting, shutting down), or None."""
        match self.phase:
            case "starting":
                return STARTING
            case "stopping":
                return STOPPING
            case _:
                return None

    def problem(self) -> dict[str, Any] | None:
        """None when healthy, else the 503 body: code, message, partitions and tasks."""
        if self.phase == "stopping":
            return {"code": 503, "message": STOPPING, "partitions": [], "tasks": []}
        failing = [
            task
            for task in self._supervisor.failing()
            if task.affects_health and (task.partition is None or self._owns(task.partition))
        ]
        failing.sort(key=lambda t: (t.partition is not None, t.partition or 0, t.name))
        reasons = []
        for task in failing:
            if task.partition is None:
                reasons.append(str(task.failing))
            else:
                reasons.append(f"partition {task.partition} is not being served: {task.failing}")
        reasons[:0] = self._log_problems()
        if self.phase == "starting":
            reasons.insert(0, STARTING)
        if not reasons:
            return None
        return {
            "code": 503,
            "message": "; ".join(reasons),
            "partitions": sorted({t.partition for t in failing if t.partition is not None}),
            "tasks": [{"name": t.name, "reason": t.failing} for t in failing] + self.degraded(),
        }

    def degraded(self) -> list[dict[str, Any]]:
        """Failing tasks that do not make the node unhealthy (name and reason), by name."""
        tasks = [t for t in self._supervisor.failing() if not t.affects_health]
        return [{"name": t.name, "reason": t.failing} for t in sorted(tasks, key=lambda t: t.name)]
