from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServiceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVICE_TYPE_UNSPECIFIED: _ClassVar[ServiceType]
    SERVICE_TYPE_SERVICE: _ClassVar[ServiceType]
    SERVICE_TYPE_VIRTUAL_OBJECT: _ClassVar[ServiceType]
    SERVICE_TYPE_WORKFLOW: _ClassVar[ServiceType]

class HandlerKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HANDLER_KIND_UNSPECIFIED: _ClassVar[HandlerKind]
    HANDLER_KIND_EXCLUSIVE: _ClassVar[HandlerKind]
    HANDLER_KIND_SHARED: _ClassVar[HandlerKind]
    HANDLER_KIND_WORKFLOW: _ClassVar[HandlerKind]
SERVICE_TYPE_UNSPECIFIED: ServiceType
SERVICE_TYPE_SERVICE: ServiceType
SERVICE_TYPE_VIRTUAL_OBJECT: ServiceType
SERVICE_TYPE_WORKFLOW: ServiceType
HANDLER_KIND_UNSPECIFIED: HandlerKind
HANDLER_KIND_EXCLUSIVE: HandlerKind
HANDLER_KIND_SHARED: HandlerKind
HANDLER_KIND_WORKFLOW: HandlerKind

class DiscoverRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("initial_interval_ms", "factor", "max_interval_ms", "max_attempts")
    INITIAL_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    FACTOR_FIELD_NUMBER: _ClassVar[int]
    MAX_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    initial_interval_ms: int
    factor: float
    max_interval_ms: int
    max_attempts: int
    def __init__(self, initial_interval_ms: _Optional[int] = ..., factor: _Optional[float] = ..., max_interval_ms: _Optional[int] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class InputPayload(_message.Message):
    __slots__ = ("required", "content_type", "non_empty", "json")
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    NON_EMPTY_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    required: bool
    content_type: str
    non_empty: bool
    json: bool
    def __init__(self, required: _Optional[bool] = ..., content_type: _Optional[str] = ..., non_empty: _Optional[bool] = ..., json: _Optional[bool] = ...) -> None: ...

class OutputPayload(_message.Message):
    __slots__ = ("content_type", "set_content_type_if_empty")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SET_CONTENT_TYPE_IF_EMPTY_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    set_content_type_if_empty: bool
    def __init__(self, content_type: _Optional[str] = ..., set_content_type_if_empty: _Optional[bool] = ...) -> None: ...

class HandlerManifest(_message.Message):
    __slots__ = ("name", "kind", "retry_policy", "inactivity_timeout_ms", "idempotency_retention_ms", "workflow_retention_ms", "documentation", "metadata", "input", "output", "abort_timeout_ms")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    INACTIVITY_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_RETENTION_MS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_RETENTION_MS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTATION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ABORT_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: HandlerKind
    retry_policy: RetryPolicy
    inactivity_timeout_ms: int
    idempotency_retention_ms: int
    workflow_retention_ms: int
    documentation: str
    metadata: _containers.ScalarMap[str, str]
    input: InputPayload
    output: OutputPayload
    abort_timeout_ms: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[HandlerKind, str]] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., inactivity_timeout_ms: _Optional[int] = ..., idempotency_retention_ms: _Optional[int] = ..., workflow_retention_ms: _Optional[int] = ..., documentation: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., input: _Optional[_Union[InputPayload, _Mapping]] = ..., output: _Optional[_Union[OutputPayload, _Mapping]] = ..., abort_timeout_ms: _Optional[int] = ...) -> None: ...

class ServiceManifest(_message.Message):
    __slots__ = ("name", "type", "handlers", "documentation", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    HANDLERS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTATION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: ServiceType
    handlers: _containers.RepeatedCompositeFieldContainer[HandlerManifest]
    documentation: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[ServiceType, str]] = ..., handlers: _Optional[_Iterable[_Union[HandlerManifest, _Mapping]]] = ..., documentation: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Manifest(_message.Message):
    __slots__ = ("protocol_version", "services", "message_batches", "multiplex")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_BATCHES_FIELD_NUMBER: _ClassVar[int]
    MULTIPLEX_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    services: _containers.RepeatedCompositeFieldContainer[ServiceManifest]
    message_batches: bool
    multiplex: bool
    def __init__(self, protocol_version: _Optional[int] = ..., services: _Optional[_Iterable[_Union[ServiceManifest, _Mapping]]] = ..., message_batches: _Optional[bool] = ..., multiplex: _Optional[bool] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Failure(_message.Message):
    __slots__ = ("code", "message", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Header(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class StateKeys(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, keys: _Optional[_Iterable[str]] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ("value", "void", "failure", "state_keys")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VOID_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    STATE_KEYS_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    void: Empty
    failure: Failure
    state_keys: StateKeys
    def __init__(self, value: _Optional[bytes] = ..., void: _Optional[_Union[Empty, _Mapping]] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., state_keys: _Optional[_Union[StateKeys, _Mapping]] = ...) -> None: ...

class InputCommand(_message.Message):
    __slots__ = ("value", "headers")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    def __init__(self, value: _Optional[bytes] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ...) -> None: ...

class OutputCommand(_message.Message):
    __slots__ = ("value", "failure")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    failure: Failure
    def __init__(self, value: _Optional[bytes] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ...) -> None: ...

class GetStateCommand(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class SetStateCommand(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class ClearStateCommand(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class ClearAllStateCommand(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStateKeysCommand(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunCommand(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CallTarget(_message.Message):
    __slots__ = ("service", "handler", "key")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    service: str
    handler: str
    key: str
    def __init__(self, service: _Optional[str] = ..., handler: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class CallCommand(_message.Message):
    __slots__ = ("target", "argument", "headers", "idempotency_key", "invocation_id")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ARGUMENT_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    target: CallTarget
    argument: bytes
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    idempotency_key: str
    invocation_id: str
    def __init__(self, target: _Optional[_Union[CallTarget, _Mapping]] = ..., argument: _Optional[bytes] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., idempotency_key: _Optional[str] = ..., invocation_id: _Optional[str] = ...) -> None: ...

class OneWayCallCommand(_message.Message):
    __slots__ = ("target", "argument", "headers", "idempotency_key", "invoke_at_ms", "invocation_id")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ARGUMENT_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    INVOKE_AT_MS_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    target: CallTarget
    argument: bytes
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    idempotency_key: str
    invoke_at_ms: int
    invocation_id: str
    def __init__(self, target: _Optional[_Union[CallTarget, _Mapping]] = ..., argument: _Optional[bytes] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., idempotency_key: _Optional[str] = ..., invoke_at_ms: _Optional[int] = ..., invocation_id: _Optional[str] = ...) -> None: ...

class SleepCommand(_message.Message):
    __slots__ = ("wake_up_ms", "name")
    WAKE_UP_MS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    wake_up_ms: int
    name: str
    def __init__(self, wake_up_ms: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class AwakeableCommand(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CompleteAwakeableCommand(_message.Message):
    __slots__ = ("awakeable_id", "value", "failure")
    AWAKEABLE_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    awakeable_id: str
    value: bytes
    failure: Failure
    def __init__(self, awakeable_id: _Optional[str] = ..., value: _Optional[bytes] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ...) -> None: ...

class GetPromiseCommand(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PeekPromiseCommand(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CompletePromiseCommand(_message.Message):
    __slots__ = ("name", "value", "failure")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: bytes
    failure: Failure
    def __init__(self, name: _Optional[str] = ..., value: _Optional[bytes] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ...) -> None: ...

class CancelInvocationCommand(_message.Message):
    __slots__ = ("invocation_id",)
    INVOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    invocation_id: str
    def __init__(self, invocation_id: _Optional[str] = ...) -> None: ...

class JournalCommand(_message.Message):
    __slots__ = ("input", "output", "get_state", "set_state", "clear_state", "clear_all_state", "get_state_keys", "run", "call", "one_way_call", "sleep", "awakeable", "complete_awakeable", "get_promise", "peek_promise", "complete_promise", "cancel_invocation")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    GET_STATE_FIELD_NUMBER: _ClassVar[int]
    SET_STATE_FIELD_NUMBER: _ClassVar[int]
    CLEAR_STATE_FIELD_NUMBER: _ClassVar[int]
    CLEAR_ALL_STATE_FIELD_NUMBER: _ClassVar[int]
    GET_STATE_KEYS_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    ONE_WAY_CALL_FIELD_NUMBER: _ClassVar[int]
    SLEEP_FIELD_NUMBER: _ClassVar[int]
    AWAKEABLE_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_AWAKEABLE_FIELD_NUMBER: _ClassVar[int]
    GET_PROMISE_FIELD_NUMBER: _ClassVar[int]
    PEEK_PROMISE_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_PROMISE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_INVOCATION_FIELD_NUMBER: _ClassVar[int]
    input: InputCommand
    output: OutputCommand
    get_state: GetStateCommand
    set_state: SetStateCommand
    clear_state: ClearStateCommand
    clear_all_state: ClearAllStateCommand
    get_state_keys: GetStateKeysCommand
    run: RunCommand
    call: CallCommand
    one_way_call: OneWayCallCommand
    sleep: SleepCommand
    awakeable: AwakeableCommand
    complete_awakeable: CompleteAwakeableCommand
    get_promise: GetPromiseCommand
    peek_promise: PeekPromiseCommand
    complete_promise: CompletePromiseCommand
    cancel_invocation: CancelInvocationCommand
    def __init__(self, input: _Optional[_Union[InputCommand, _Mapping]] = ..., output: _Optional[_Union[OutputCommand, _Mapping]] = ..., get_state: _Optional[_Union[GetStateCommand, _Mapping]] = ..., set_state: _Optional[_Union[SetStateCommand, _Mapping]] = ..., clear_state: _Optional[_Union[ClearStateCommand, _Mapping]] = ..., clear_all_state: _Optional[_Union[ClearAllStateCommand, _Mapping]] = ..., get_state_keys: _Optional[_Union[GetStateKeysCommand, _Mapping]] = ..., run: _Optional[_Union[RunCommand, _Mapping]] = ..., call: _Optional[_Union[CallCommand, _Mapping]] = ..., one_way_call: _Optional[_Union[OneWayCallCommand, _Mapping]] = ..., sleep: _Optional[_Union[SleepCommand, _Mapping]] = ..., awakeable: _Optional[_Union[AwakeableCommand, _Mapping]] = ..., complete_awakeable: _Optional[_Union[CompleteAwakeableCommand, _Mapping]] = ..., get_promise: _Optional[_Union[GetPromiseCommand, _Mapping]] = ..., peek_promise: _Optional[_Union[PeekPromiseCommand, _Mapping]] = ..., complete_promise: _Optional[_Union[CompletePromiseCommand, _Mapping]] = ..., cancel_invocation: _Optional[_Union[CancelInvocationCommand, _Mapping]] = ...) -> None: ...

class JournalEntry(_message.Message):
    __slots__ = ("index", "command", "completion", "completion_seq")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_SEQ_FIELD_NUMBER: _ClassVar[int]
    index: int
    command: JournalCommand
    completion: Completion
    completion_seq: int
    def __init__(self, index: _Optional[int] = ..., command: _Optional[_Union[JournalCommand, _Mapping]] = ..., completion: _Optional[_Union[Completion, _Mapping]] = ..., completion_seq: _Optional[int] = ...) -> None: ...

class Start(_message.Message):
    __slots__ = ("invocation_id", "service", "handler", "key", "known_entries", "random_seed", "attempt", "cancel_seq", "eager_state", "replay_only", "message_batches")
    INVOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    KNOWN_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    RANDOM_SEED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_SEQ_FIELD_NUMBER: _ClassVar[int]
    EAGER_STATE_FIELD_NUMBER: _ClassVar[int]
    REPLAY_ONLY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_BATCHES_FIELD_NUMBER: _ClassVar[int]
    invocation_id: str
    service: str
    handler: str
    key: str
    known_entries: int
    random_seed: int
    attempt: int
    cancel_seq: int
    eager_state: EagerState
    replay_only: bool
    message_batches: bool
    def __init__(self, invocation_id: _Optional[str] = ..., service: _Optional[str] = ..., handler: _Optional[str] = ..., key: _Optional[str] = ..., known_entries: _Optional[int] = ..., random_seed: _Optional[int] = ..., attempt: _Optional[int] = ..., cancel_seq: _Optional[int] = ..., eager_state: _Optional[_Union[EagerState, _Mapping]] = ..., replay_only: _Optional[bool] = ..., message_batches: _Optional[bool] = ...) -> None: ...

class StateEntry(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class EagerState(_message.Message):
    __slots__ = ("entries", "complete")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[StateEntry]
    complete: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[StateEntry, _Mapping]]] = ..., complete: _Optional[bool] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("cancel_seq",)
    CANCEL_SEQ_FIELD_NUMBER: _ClassVar[int]
    cancel_seq: int
    def __init__(self, cancel_seq: _Optional[int] = ...) -> None: ...

class Notification(_message.Message):
    __slots__ = ("index", "completion", "completion_seq", "invocation_id")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_SEQ_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    index: int
    completion: Completion
    completion_seq: int
    invocation_id: str
    def __init__(self, index: _Optional[int] = ..., completion: _Optional[_Union[Completion, _Mapping]] = ..., completion_seq: _Optional[int] = ..., invocation_id: _Optional[str] = ...) -> None: ...

class RuntimeBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[RuntimeMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[RuntimeMessage, _Mapping]]] = ...) -> None: ...

class RuntimeMessage(_message.Message):
    __slots__ = ("start", "replay_entry", "notification", "cancel", "batch")
    START_FIELD_NUMBER: _ClassVar[int]
    REPLAY_ENTRY_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    start: Start
    replay_entry: JournalEntry
    notification: Notification
    cancel: Cancel
    batch: RuntimeBatch
    def __init__(self, start: _Optional[_Union[Start, _Mapping]] = ..., replay_entry: _Optional[_Union[JournalEntry, _Mapping]] = ..., notification: _Optional[_Union[Notification, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., batch: _Optional[_Union[RuntimeBatch, _Mapping]] = ...) -> None: ...

class ProposedCommand(_message.Message):
    __slots__ = ("index", "command", "completion")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    index: int
    command: JournalCommand
    completion: Completion
    def __init__(self, index: _Optional[int] = ..., command: _Optional[_Union[JournalCommand, _Mapping]] = ..., completion: _Optional[_Union[Completion, _Mapping]] = ...) -> None: ...

class ProposeRunCompletion(_message.Message):
    __slots__ = ("index", "value", "failure")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    index: int
    value: bytes
    failure: Failure
    def __init__(self, index: _Optional[int] = ..., value: _Optional[bytes] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "retryable", "related_entry")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    RELATED_ENTRY_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    retryable: bool
    related_entry: int
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ..., related_entry: _Optional[int] = ...) -> None: ...

class End(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Suspension(_message.Message):
    __slots__ = ("awaiting_entries",)
    AWAITING_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    awaiting_entries: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, awaiting_entries: _Optional[_Iterable[int]] = ...) -> None: ...

class SdkBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[SdkMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[SdkMessage, _Mapping]]] = ...) -> None: ...

class SdkMessage(_message.Message):
    __slots__ = ("command", "run_completion", "error", "end", "suspension", "batch")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    RUN_COMPLETION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SUSPENSION_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    command: ProposedCommand
    run_completion: ProposeRunCompletion
    error: Error
    end: End
    suspension: Suspension
    batch: SdkBatch
    def __init__(self, command: _Optional[_Union[ProposedCommand, _Mapping]] = ..., run_completion: _Optional[_Union[ProposeRunCompletion, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., end: _Optional[_Union[End, _Mapping]] = ..., suspension: _Optional[_Union[Suspension, _Mapping]] = ..., batch: _Optional[_Union[SdkBatch, _Mapping]] = ...) -> None: ...

class RuntimeFrame(_message.Message):
    __slots__ = ("attempt", "messages", "close", "abandon")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    ABANDON_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    messages: _containers.RepeatedCompositeFieldContainer[RuntimeMessage]
    close: bool
    abandon: bool
    def __init__(self, attempt: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[RuntimeMessage, _Mapping]]] = ..., close: _Optional[bool] = ..., abandon: _Optional[bool] = ...) -> None: ...

class RuntimeFrames(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[RuntimeFrame]
    def __init__(self, frames: _Optional[_Iterable[_Union[RuntimeFrame, _Mapping]]] = ...) -> None: ...

class SdkFrame(_message.Message):
    __slots__ = ("attempt", "messages", "end")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    messages: _containers.RepeatedCompositeFieldContainer[SdkMessage]
    end: bool
    def __init__(self, attempt: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[SdkMessage, _Mapping]]] = ..., end: _Optional[bool] = ...) -> None: ...

class SdkFrames(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[SdkFrame]
    def __init__(self, frames: _Optional[_Iterable[_Union[SdkFrame, _Mapping]]] = ...) -> None: ...
