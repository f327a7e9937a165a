from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("encoding", "shape", "data")
    class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ENCODING_UNSPECIFIED: _ClassVar[Image.Encoding]
        RAW_RGB8: _ClassVar[Image.Encoding]
        JPEG: _ClassVar[Image.Encoding]
        PNG: _ClassVar[Image.Encoding]
    ENCODING_UNSPECIFIED: Image.Encoding
    RAW_RGB8: Image.Encoding
    JPEG: Image.Encoding
    PNG: Image.Encoding
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    encoding: Image.Encoding
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, encoding: _Optional[_Union[Image.Encoding, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class RealTimeChunking(_message.Message):
    __slots__ = ("queued_actions", "inference_delay", "execution_horizon")
    QUEUED_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_DELAY_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_HORIZON_FIELD_NUMBER: _ClassVar[int]
    queued_actions: Tensor
    inference_delay: int
    execution_horizon: int
    def __init__(self, queued_actions: _Optional[_Union[Tensor, _Mapping]] = ..., inference_delay: _Optional[int] = ..., execution_horizon: _Optional[int] = ...) -> None: ...

class Observation(_message.Message):
    __slots__ = ("session_id", "step", "timestamp", "images", "state", "task", "rtc")
    class ImagesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Image
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    RTC_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    step: int
    timestamp: float
    images: _containers.MessageMap[str, Image]
    state: Tensor
    task: str
    rtc: RealTimeChunking
    def __init__(self, session_id: _Optional[str] = ..., step: _Optional[int] = ..., timestamp: _Optional[float] = ..., images: _Optional[_Mapping[str, Image]] = ..., state: _Optional[_Union[Tensor, _Mapping]] = ..., task: _Optional[str] = ..., rtc: _Optional[_Union[RealTimeChunking, _Mapping]] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queue_ms", "prefill_ms", "denoise_ms", "total_ms")
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    PREFILL_MS_FIELD_NUMBER: _ClassVar[int]
    DENOISE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    queue_ms: float
    prefill_ms: float
    denoise_ms: float
    total_ms: float
    def __init__(self, queue_ms: _Optional[float] = ..., prefill_ms: _Optional[float] = ..., denoise_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class ActionChunk(_message.Message):
    __slots__ = ("session_id", "observation_step", "actions", "subtask", "subtask_version", "timings")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_STEP_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    observation_step: int
    actions: Tensor
    subtask: str
    subtask_version: int
    timings: Timings
    def __init__(self, session_id: _Optional[str] = ..., observation_step: _Optional[int] = ..., actions: _Optional[_Union[Tensor, _Mapping]] = ..., subtask: _Optional[str] = ..., subtask_version: _Optional[int] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ...) -> None: ...

class SubtaskUpdate(_message.Message):
    __slots__ = ("session_id", "text", "version", "observation_step", "decode_ms", "prefill_ms")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_STEP_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    PREFILL_MS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    text: str
    version: int
    observation_step: int
    decode_ms: float
    prefill_ms: float
    def __init__(self, session_id: _Optional[str] = ..., text: _Optional[str] = ..., version: _Optional[int] = ..., observation_step: _Optional[int] = ..., decode_ms: _Optional[float] = ..., prefill_ms: _Optional[float] = ...) -> None: ...

class RuntimeMetadata(_message.Message):
    __slots__ = ("action_dims", "action_horizon", "state_dims", "cameras", "model_config_json", "num_denoise_steps", "version", "session_id", "resume_token")
    ACTION_DIMS_FIELD_NUMBER: _ClassVar[int]
    ACTION_HORIZON_FIELD_NUMBER: _ClassVar[int]
    STATE_DIMS_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    MODEL_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    NUM_DENOISE_STEPS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    action_dims: int
    action_horizon: int
    state_dims: int
    cameras: _containers.RepeatedScalarFieldContainer[str]
    model_config_json: str
    num_denoise_steps: int
    version: str
    session_id: str
    resume_token: str
    def __init__(self, action_dims: _Optional[int] = ..., action_horizon: _Optional[int] = ..., state_dims: _Optional[int] = ..., cameras: _Optional[_Iterable[str]] = ..., model_config_json: _Optional[str] = ..., num_denoise_steps: _Optional[int] = ..., version: _Optional[str] = ..., session_id: _Optional[str] = ..., resume_token: _Optional[str] = ...) -> None: ...

class SessionOpen(_message.Message):
    __slots__ = ("session_id", "task", "resume_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    task: str
    resume_token: str
    def __init__(self, session_id: _Optional[str] = ..., task: _Optional[str] = ..., resume_token: _Optional[str] = ...) -> None: ...

class SessionClose(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("open", "observation", "close")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    open: SessionOpen
    observation: Observation
    close: SessionClose
    def __init__(self, open: _Optional[_Union[SessionOpen, _Mapping]] = ..., observation: _Optional[_Union[Observation, _Mapping]] = ..., close: _Optional[_Union[SessionClose, _Mapping]] = ...) -> None: ...

class SessionEvent(_message.Message):
    __slots__ = ("metadata", "chunk", "subtask")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    metadata: RuntimeMetadata
    chunk: ActionChunk
    subtask: SubtaskUpdate
    def __init__(self, metadata: _Optional[_Union[RuntimeMetadata, _Mapping]] = ..., chunk: _Optional[_Union[ActionChunk, _Mapping]] = ..., subtask: _Optional[_Union[SubtaskUpdate, _Mapping]] = ...) -> None: ...

class MetadataRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Histogram(_message.Message):
    __slots__ = ("bounds_ms", "counts", "p50_ms", "p99_ms", "count")
    BOUNDS_MS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    bounds_ms: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[int]
    p50_ms: float
    p99_ms: float
    count: int
    def __init__(self, bounds_ms: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[int]] = ..., p50_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Stats(_message.Message):
    __slots__ = ("latency", "counters")
    class LatencyEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Histogram
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Histogram, _Mapping]] = ...) -> None: ...
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    latency: _containers.MessageMap[str, Histogram]
    counters: _containers.ScalarMap[str, int]
    def __init__(self, latency: _Optional[_Mapping[str, Histogram]] = ..., counters: _Optional[_Mapping[str, int]] = ...) -> None: ...

class PlanRequest(_message.Message):
    __slots__ = ("session_id", "observation_step", "images", "state", "task", "max_tokens")
    class ImagesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Image
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_STEP_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    observation_step: int
    images: _containers.MessageMap[str, Image]
    state: Tensor
    task: str
    max_tokens: int
    def __init__(self, session_id: _Optional[str] = ..., observation_step: _Optional[int] = ..., images: _Optional[_Mapping[str, Image]] = ..., state: _Optional[_Union[Tensor, _Mapping]] = ..., task: _Optional[str] = ..., max_tokens: _Optional[int] = ...) -> None: ...

class PlanReply(_message.Message):
    __slots__ = ("session_id", "observation_step", "subtask", "tokens", "prefill_ms", "decode_ms")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_STEP_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREFILL_MS_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    observation_step: int
    subtask: str
    tokens: _containers.RepeatedScalarFieldContainer[int]
    prefill_ms: float
    decode_ms: float
    def __init__(self, session_id: _Optional[str] = ..., observation_step: _Optional[int] = ..., subtask: _Optional[str] = ..., tokens: _Optional[_Iterable[int]] = ..., prefill_ms: _Optional[float] = ..., decode_ms: _Optional[float] = ...) -> None: ...
