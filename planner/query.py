"""The planner-only text query (`robot-runtime plan`): image files + task → one subtask, decoded locally, or
for a reasoning checkpoint (`--reasoning`) think vs act and the reasoning (`planner.reasoning`).

Everything the user typed is checked before the weights load (image specs, files, camera names, task), so a
typo costs a second, not a model load; each problem is one `QueryError` line.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from planner.decoder import (
    DEFAULT_MAX_NEW_TOKENS,
    DecodeRequest,
    PlanResult,
    SubtaskDecoder,
)
from planner.reasoning import ReasoningPlanner, ReasoningRequest, ReasoningStep
from policy.errors import UserFacingError

if TYPE_CHECKING:
    from policy.model_dir import ModelDir
    from policy.tokenizer import TextTokenizer


class QueryError(UserFacingError):
    """Bad query input: the message is one line naming the argument."""


@dataclasses.dataclass(frozen=True)
class Query:
    checkpoint: pathlib.Path
    images: Mapping[str, pathlib.Path]
    task: str
    tokenizer: pathlib.Path | None = None
    config_name: str | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    vocab: str = "ascii"
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    warm_up: bool = False
    # Reasoning checkpoints: the latest reasoning, the context instead of the task.
    last_reasoning: str | None = None


def parse_image_specs(specs: Sequence[str]) -> dict[str, pathlib.Path]:
    """`CAMERA=PATH` strings → camera → path, refusing malformed and repeated cameras."""
    images: dict[str, pathlib.Path] = {}
    for spec in specs:
        camera, sep, path = spec.partition("=")
        if not sep or not camera.strip() or not path.strip():
            raise QueryError(f"--image {spec!r} is malformed; write CAMERA=PATH, e.g. base_0_rgb=cam0.png")
        camera = camera.strip()
        if camera in images:
            raise QueryError(f"--image gives camera {camera!r} twice")
        images[camera] = pathlib.Path(path.strip()).expanduser()
    if not images:
        raise QueryError("give at least one --image CAMERA=PATH")
    return images


def read_rgb(path: pathlib.Path) -> np.ndarray:
    """uint8 [H,W,3] RGB from an image file (OpenCV reads BGR)."""
    import cv2

    if not path.is_file():
        raise QueryError(f"image file {path} does not exist")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise QueryError(f"cannot read {path} as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def check_cameras(images: Mapping[str, pathlib.Path], known: Sequence[str]) -> None:
    for camera in images:
        if camera not in known:
            raise QueryError(f"--image names unknown camera {camera!r}; the model reads {list(known)}")


def run_query(query: Query) -> PlanResult:
    """Checks the input, loads the checkpoint and decodes one subtask.

    The first run of freshly compiled code pays one-time setup (tens of ms on CPU), so the timings of a single
    query are cold ones; `warm_up` decodes black images first and reports warm timings.
    """
    if query.last_reasoning is not None:
        raise QueryError("--last-reasoning goes with --reasoning")
    model_dir, tokenizer, cameras = _load(query)
    decoder = SubtaskDecoder(
        model_dir.load_model(),
        tokenizer,
        model_dir.config,
        vocab=query.vocab,
        max_new_tokens=query.max_new_tokens,
        buckets=(1,),
        norm_stats=model_dir.norm_stats,
    )
    if query.warm_up:
        decoder.warm_up()
    request = DecodeRequest(cameras, query.task)
    return decoder.decode([request], temperature=query.temperature, top_p=query.top_p, seed=query.seed)[0]


def run_reasoning_query(query: Query) -> ReasoningStep:
    """`run_query` for a reasoning checkpoint: think or act on the task (or `last_reasoning`), as the planner
    of the reasoning protocol does."""
    if query.last_reasoning is not None and not query.last_reasoning.strip():
        raise QueryError("--last-reasoning is empty; leave it out before the first reasoning")
    model_dir, tokenizer, cameras = _load(query)
    planner = ReasoningPlanner(
        model_dir.load_model(), tokenizer, model_dir.config, vocab=query.vocab, max_new_tokens=query.max_new_tokens
    )
    if query.warm_up:
        planner.warm_up()
    request = ReasoningRequest(cameras, query.last_reasoning or query.task)
    return planner.plan(request, temperature=query.temperature, top_p=query.top_p, seed=query.seed)


def _load(query: Query) -> tuple[ModelDir, TextTokenizer, dict[str, np.ndarray]]:
    """Checks what the user typed, then opens the checkpoint: (model dir, tokenizer, camera images)."""
    from policy.config import NAMED_CONFIGS
    from policy.model_dir import ModelDir

    if query.config_name is not None and query.config_name not in NAMED_CONFIGS:
        raise QueryError(f"unknown --config {query.config_name!r}; expected one of {sorted(NAMED_CONFIGS)}")
    if not query.task.strip():
        raise QueryError("--task is empty; say what the robot should do")
    if query.max_new_tokens < 1:
        raise QueryError(f"--max-tokens must be at least 1, got {query.max_new_tokens}")
    for path in query.images.values():
        if not path.is_file():
            raise QueryError(f"image file {path} does not exist")
    model_dir = ModelDir.open(query.checkpoint, config_name=query.config_name, tokenizer=query.tokenizer)
    check_cameras(query.images, model_dir.config.image_keys)
    tokenizer = model_dir.text_tokenizer()
    cameras = {camera: read_rgb(path) for camera, path in query.images.items()}
    return model_dir, tokenizer, cameras


def ask_server(
    address: str,
    images: Mapping[str, pathlib.Path],
    task: str,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    token: str | None = None,
    tls_ca: pathlib.Path | None = None,
    timeout_s: float = 60.0,
) -> PlanResult:
    """The same query answered by a running planner process (`robot-runtime serve-planner`)."""
    import grpc

    from protos.grpc_server import auth_metadata, channel_options
    from protos.robot_runtime.v1 import runtime_pb2 as pb
    from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc
    from protos.wire import numpy_to_image

    if not task.strip():
        raise QueryError("--task is empty; say what the robot should do")
    request = pb.PlanRequest(
        task=task,
        images={camera: numpy_to_image(read_rgb(path), "png") for camera, path in images.items()},
        max_tokens=max_new_tokens,
    )
    if tls_ca is not None:
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(tls_ca.read_bytes()), channel_options())
    else:
        channel = grpc.insecure_channel(address, channel_options())
    with channel:
        try:
            reply = pb_grpc.PlannerStub(channel).Plan(request, timeout=timeout_s, metadata=auth_metadata(token))
        except grpc.RpcError as err:
            raise QueryError(f"planner at {address} answered {err.code().name}: {err.details()}") from err
    return PlanResult(reply.subtask, tuple(reply.tokens), False, reply.prefill_ms, reply.decode_ms)


def result_json(result: PlanResult) -> dict[str, object]:
    return {
        "subtask": result.text,
        "tokens": list(result.token_ids),
        "finished": result.finished,
        "prefill_ms": round(result.prefill_ms, 3),
        "decode_ms": round(result.decode_ms, 3),
    }


def reasoning_json(step: ReasoningStep) -> dict[str, object]:
    return {
        "decision": step.decision,
        "text": step.text,
        "margin": round(step.margin, 6),
        "tokens": list(step.token_ids),
        "finished": step.finished,
        "prefill_ms": round(step.prefill_ms, 3),
        "decode_ms": round(step.decode_ms, 3),
    }
