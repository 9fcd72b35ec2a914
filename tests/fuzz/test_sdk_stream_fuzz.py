"""Property: a rogue SDK endpoint (garbage bytes, messages out of order, huge messages, unknown
types, invalid ids, keys and numbers) can fail its own invocations but never stall a partition:
each rogue invocation ends or can be killed, and every partition still serves (DESIGN §11)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proto import endpoint_pb2 as pb
from sdk.ports import free_port
from tests.e2e.conftest import Cluster
from tests.fuzz.support import FUZZ, every_partition_serves, http_json
from tests.fuzz.test_ingress_fuzz import IDS

HUGE = b"<huge>"  # stands for a message over every gRPC limit, built only when sent
RETRIES = pb.RetryPolicy(initial_interval_ms=5, factor=1, max_interval_ms=5, max_attempts=2)


class RogueEndpoint:
    """Answers Discover honestly, then plays ``script`` (raw message bytes) on every Invoke."""

    def __init__(self) -> None:
        self.script: list[bytes] = []
        self._lock = threading.Lock()

    def discover(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        manifest = pb.Manifest(
            protocol_version=1,
            services=[
                pb.ServiceManifest(
                    name="Rogue",
                    type=pb.SERVICE_TYPE_SERVICE,
                    handlers=[pb.HandlerManifest(name="run", retry_policy=RETRIES)],
                ),
                pb.ServiceManifest(
                    name="RogueObject",
                    type=pb.SERVICE_TYPE_VIRTUAL_OBJECT,
                    handlers=[
                        pb.HandlerManifest(
                            name="run", kind=pb.HANDLER_KIND_EXCLUSIVE, retry_policy=RETRIES
                        )
                    ],
                ),
            ],
        )
        return manifest.SerializeToString()

    def invoke(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        next(requests, None)  # Start
        with self._lock:
            script = list(self.script)
        for message in script:
            if message == HUGE:
                set_state = pb.SetStateCommand(key="k", value=b"h" * (24 * 1024 * 1024))
                command = pb.ProposedCommand(
                    index=1, command=pb.JournalCommand(set_state=set_state)
                )
                message = pb.SdkMessage(command=command).SerializeToString()
            yield message


@pytest.fixture(scope="module")
def rogue(node: Cluster) -> Iterator[RogueEndpoint]:
    endpoint = RogueEndpoint()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ],
    )
    handlers = {
        "Discover": grpc.unary_unary_rpc_method_handler(endpoint.discover),
        "Invoke": grpc.stream_stream_rpc_method_handler(endpoint.invoke),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("cairn.endpoint.v1.Endpoint", handlers),)
    )
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    status, body = http_json(
        "POST", f"{node.node.admin}/deployments", {"uri": f"http://127.0.0.1:{port}"}
    )
    assert status in (200, 201), body
    yield endpoint
    server.stop(grace=1).wait()


texts = st.one_of(
    st.text(max_size=20),
    st.sampled_from(IDS),
    st.integers(60_000, 70_000).map(lambda n: "k" * n),
)
values = st.one_of(st.binary(max_size=40), st.just(b'"ok"'))
indexes = st.one_of(st.integers(0, 4), st.integers(0, 2**32 - 1))
millis = st.one_of(st.integers(0, 2**64 - 1), st.just(0), st.just(2**64 - 1))
targets = st.builds(
    pb.CallTarget,
    # Not Rogue itself: a rogue calling itself would call itself again, without end.
    service=st.sampled_from(["Counter", "Poison", "Nope", "k" * 70_000]),
    handler=st.sampled_from(["add", "get", "echo_back", "x"]),
    key=st.one_of(st.none(), texts),
)
commands = st.one_of(
    st.builds(lambda k: pb.JournalCommand(get_state=pb.GetStateCommand(key=k)), texts),
    st.builds(
        lambda k, v: pb.JournalCommand(set_state=pb.SetStateCommand(key=k, value=v)), texts, values
    ),
    st.just(pb.JournalCommand(clear_all_state=pb.ClearAllStateCommand())),
    st.just(pb.JournalCommand(get_state_keys=pb.GetStateKeysCommand())),
    st.builds(lambda n: pb.JournalCommand(run=pb.RunCommand(name=n)), texts),
    st.builds(
        lambda t, a, i: pb.JournalCommand(
            call=pb.CallCommand(target=t, argument=a, idempotency_key=i)
        ),
        targets,
        values,
        st.one_of(st.none(), texts),
    ),
    st.builds(
        lambda t, a, at: pb.JournalCommand(
            one_way_call=pb.OneWayCallCommand(target=t, argument=a, invoke_at_ms=at)
        ),
        targets,
        values,
        millis,
    ),
    st.builds(lambda w: pb.JournalCommand(sleep=pb.SleepCommand(wake_up_ms=w)), millis),
    st.builds(lambda n: pb.JournalCommand(awakeable=pb.AwakeableCommand(name=n)), texts),
    st.builds(
        lambda i, v: pb.JournalCommand(
            complete_awakeable=pb.CompleteAwakeableCommand(awakeable_id=i, value=v)
        ),
        texts,
        values,
    ),
    st.builds(lambda n: pb.JournalCommand(get_promise=pb.GetPromiseCommand(name=n)), texts),
    st.builds(
        lambda n, v: pb.JournalCommand(complete_promise=pb.CompletePromiseCommand(name=n, value=v)),
        texts,
        values,
    ),
    st.builds(
        lambda i: pb.JournalCommand(cancel_invocation=pb.CancelInvocationCommand(invocation_id=i)),
        texts,
    ),
    st.builds(lambda v: pb.JournalCommand(output=pb.OutputCommand(value=v)), values),
    st.just(pb.JournalCommand(input=pb.InputCommand(value=b"1"))),
    st.just(pb.JournalCommand()),
)
sdk_messages = st.one_of(
    st.builds(
        lambda i, c: pb.SdkMessage(command=pb.ProposedCommand(index=i, command=c)),
        indexes,
        commands,
    ),
    st.builds(
        lambda i, v: pb.SdkMessage(run_completion=pb.ProposeRunCompletion(index=i, value=v)),
        indexes,
        values,
    ),
    st.builds(
        lambda c, m, r: pb.SdkMessage(error=pb.Error(code=c, message=m, retryable=r)),
        st.integers(0, 2**32 - 1),
        texts,
        st.booleans(),
    ),
    st.just(pb.SdkMessage(end=pb.End())),
    st.builds(
        lambda a: pb.SdkMessage(suspension=pb.Suspension(awaiting_entries=a)),
        st.lists(indexes, max_size=3),
    ),
    st.just(pb.SdkMessage()),
).map(lambda m: m.SerializeToString())
raw_messages = st.one_of(
    sdk_messages,
    sdk_messages,
    st.binary(min_size=1, max_size=30),  # garbage
    st.just(b"\xf8\x06\x01"),  # an unknown field
    st.just(HUGE),
)


def _finish(node: Cluster, invocation_id: str) -> str:
    """Wait for the rogue invocation to end; kill it if it does not (it may wait forever, or
    the rogue may loop it through suspensions): either way the node must carry it out."""
    status_url = f"{node.node.admin}/invocations/{invocation_id}"
    deadline = time.monotonic() + 30  # the 202 means appended; the store follows
    while (found := http_json("GET", status_url))[0] == 404 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert found[0] == 200, found
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        status, body = http_json("GET", status_url)
        assert status == 200, body
        if body["status"] == "completed":
            return "completed"
        time.sleep(0.02)
    status, body = http_json("PATCH", f"{status_url}/kill")
    assert status in (200, 409), body  # as Restate: 200 once killed, 409 already completed
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = http_json("GET", status_url)
        if status == 200 and body["status"] == "completed":
            return "killed"
        time.sleep(0.02)
    raise AssertionError(f"{invocation_id} neither ended nor could be killed: {body}")


@FUZZ
@given(script=st.lists(raw_messages, max_size=6), keyed=st.booleans())
def test_a_rogue_endpoint_never_stalls_a_partition(
    node: Cluster, rogue: RogueEndpoint, script: list[bytes], keyed: bool
) -> None:
    rogue.script = script
    path = "/RogueObject/fuzz/run/send" if keyed else "/Rogue/run/send"
    status, body = http_json("POST", f"{node.node.ingress}{path}", "go")
    assert status == 202, body
    _finish(node, body["invocationId"])


def test_after_the_fuzz_every_partition_serves(node: Cluster, rogue: RogueEndpoint) -> None:
    every_partition_serves(node.node.ingress)
    log = node.node.process.output()
    assert "Traceback" not in log, log[-5000:]
