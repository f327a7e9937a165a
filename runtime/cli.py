"""`robot-runtime`: one command with a subcommand per job. Heavy imports happen inside each subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from policy.errors import UserFacingError


class UserError(UserFacingError):
    """A bad command-line argument."""


def _init_checkpoint(args: argparse.Namespace) -> int:
    from policy.config import NAMED_CONFIGS
    from policy.model_dir import init_model_dir

    if args.config not in NAMED_CONFIGS:
        raise UserError(f"unknown --config {args.config!r}; expected one of {sorted(NAMED_CONFIGS)}")
    fields = {"dtype": args.dtype} if args.dtype else {}
    out = init_model_dir(args.config, args.out, seed=args.seed, asset_id=args.asset_id, **fields)
    print(f"wrote random-weight checkpoint '{args.config}' (seed {args.seed}) to {out}")
    return 0


def _check_parity(args: argparse.Namespace) -> int:
    from policy.parity import check_parity

    report = check_parity(args.fixture_dir)
    for line in report.lines():
        print(line)
    print("parity: PASS" if report.ok else "parity: FAIL")
    return 0 if report.ok else 1


def _plan(args: argparse.Namespace) -> int:
    import json
    import pathlib

    from planner.query import Query, parse_image_specs, result_json, run_query

    query = Query(
        checkpoint=pathlib.Path(args.checkpoint),
        images=parse_image_specs(args.image),
        task=args.task,
        tokenizer=pathlib.Path(args.tokenizer) if args.tokenizer else None,
        config_name=args.config,
        max_new_tokens=args.max_tokens,
        vocab=args.vocab,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        warm_up=args.warm_up,
    )
    result = run_query(query)
    print(json.dumps(result_json(result)) if args.json else result.text)
    return 0


def _model_source(args: argparse.Namespace):
    import pathlib

    from runtime.serve import ModelSource

    return ModelSource(
        checkpoint=pathlib.Path(args.checkpoint),
        tokenizer=pathlib.Path(args.tokenizer) if args.tokenizer else None,
        config=args.config,
        asset_id=args.asset_id,
    )


def _security(args: argparse.Namespace):
    import os
    import pathlib

    from runtime.grpc_server import Security

    try:
        return Security(
            tls_cert=pathlib.Path(args.tls_cert) if args.tls_cert else None,
            tls_key=pathlib.Path(args.tls_key) if args.tls_key else None,
            token=args.token or os.environ.get("ROBOT_RUNTIME_TOKEN") or None,
        )
    except ValueError as err:
        raise UserError(str(err)) from err


def _configure_logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("absl", "jax", "orbax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _serve(args: argparse.Namespace) -> int:
    import pathlib

    from runtime.serve import RuntimeOptions, parse_cameras, run_async, serve_runtime, set_cpu_affinity

    _configure_logging()
    set_cpu_affinity(args.actor_cpus)
    try:
        cameras = parse_cameras(args.camera)
    except ValueError as err:
        raise UserError(str(err)) from err
    options = RuntimeOptions(
        model=_model_source(args),
        address=f"{args.host}:{args.port}",
        planner_address=args.planner_address,
        planner_interval_s=args.planner_interval,
        wait_for_subtask_ms=args.wait_for_subtask_ms,
        cameras=cameras,
        action_dims=args.action_dims,
        state_dims=args.state_dims,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        num_steps=args.num_steps,
        security=_security(args),
        max_message_mb=args.max_message_mb,
        planner_cpus=args.planner_cpus,
        planner_devices=args.planner_devices,
        planner_max_tokens=args.max_tokens,
        ready_file=pathlib.Path(args.ready_file) if args.ready_file else None,
        openpi_port=args.openpi_port,
        openpi_host=args.openpi_host,
    )
    run_async(serve_runtime(options))
    return 0


def _serve_planner(args: argparse.Namespace) -> int:
    from runtime.serve import PlannerOptions, run_async, serve_planner, set_cpu_affinity

    _configure_logging()
    set_cpu_affinity(args.cpus)
    address = args.address or f"{args.host}:{args.port}"
    options = PlannerOptions(
        model=_model_source(args),
        address=address,
        max_tokens=args.max_tokens,
        vocab=args.vocab,
        security=_security(args),
        max_message_mb=args.max_message_mb,
    )
    run_async(serve_planner(options))
    return 0


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="model directory (params/, assets/, model_config.json)")
    p.add_argument("--tokenizer", help="SentencePiece model (default: the checkpoint's tokenizer.model)")
    p.add_argument("--config", help="model config name, for checkpoints without model_config.json")
    p.add_argument("--asset-id", help="which assets/ASSET_ID/norm_stats.json to use when there are several")


def _add_server_args(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=port)
    p.add_argument("--tls-cert", help="PEM certificate chain; with --tls-key enables TLS")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--token", help="require 'authorization: Bearer TOKEN' (or set ROBOT_RUNTIME_TOKEN)")
    p.add_argument("--max-message-mb", type=int, default=64, help="largest gRPC message accepted or sent")
    p.add_argument("--max-tokens", type=int, default=20, help="most subtask tokens the planner decodes")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robot-runtime", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init-checkpoint", help="write a random-weight checkpoint, tokenizer and norm stats")
    p.add_argument("--config", required=True, help="model config name (tiny, dummy, pi05, pi05_lora, pi0)")
    p.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--asset-id", default="default", help="norm stats go to assets/ASSET_ID/norm_stats.json")
    p.add_argument("--dtype", choices=["bfloat16", "float32"], help="inference dtype stored in the config")
    p.set_defaults(run=_init_checkpoint)

    p = sub.add_parser("check-parity", help="compare the network with an openpi reference fixture")
    p.add_argument("fixture_dir", help="directory with meta.json, io.npz and params/")
    p.set_defaults(run=_check_parity)

    p = sub.add_parser("plan", help="decode the next subtask for camera images and a task, locally")
    p.add_argument("--checkpoint", required=True, help="model directory (params/, assets/, model_config.json)")
    p.add_argument("--tokenizer", help="SentencePiece model (default: the checkpoint's tokenizer.model)")
    p.add_argument("--image", action="append", default=[], metavar="CAMERA=PATH", help="e.g. base_0_rgb=cam0.png")
    p.add_argument("--task", required=True, help='what the robot should do, e.g. "put the red cube in the bowl"')
    p.add_argument("--max-tokens", type=int, default=20, help="most subtask tokens to decode")
    p.add_argument("--vocab", choices=["ascii", "all"], default="ascii", help="tokens the planner may emit")
    p.add_argument("--config", help="model config name, for checkpoints without model_config.json")
    p.add_argument("--temperature", type=float, default=0.0, help="0 decodes greedily")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus size when sampling")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--warm-up", action="store_true", help="decode black images first, so the timings are warm")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text")
    p.set_defaults(run=_plan)

    p = sub.add_parser("serve", help="serve robots: the runtime (actor) process, with a local planner process")
    _add_model_args(p)
    _add_server_args(p, 50051)
    p.add_argument("--planner-address", help="use a running `serve-planner` (host:port or unix:PATH) instead")
    p.add_argument("--planner-interval", type=float, default=0.0, metavar="SECONDS",
                   help="least time between two plans of one session (default: whenever the planner is free)")
    p.add_argument("--wait-for-subtask-ms", type=float, default=0.0,
                   help="before a session's first subtask, wait up to this long for it (default: use the task)")
    p.add_argument("--camera", action="append", metavar="NAME=MODEL_KEY",
                   help="robot camera name → model image key (default: agentview=base_0_rgb wrist=left_wrist_0_rgb)")
    p.add_argument("--action-dims", type=int, help="action dims sent to the robot (default: the norm stats')")
    p.add_argument("--state-dims", type=int, help="state dims expected from the robot (default: the norm stats')")
    p.add_argument("--max-batch", type=int, default=8, help="most sessions sampled together")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="how long a batch waits for more sessions")
    p.add_argument("--num-steps", type=int, default=10, help="Euler steps per chunk")
    p.add_argument("--actor-cpus", help="pin the runtime process to these cores, e.g. 0 or 0-3")
    p.add_argument("--planner-cpus", help="pin the local planner process to these cores, e.g. 1")
    p.add_argument("--planner-devices", help="CUDA_VISIBLE_DEVICES for the local planner process")
    p.add_argument("--openpi-port", type=int, metavar="PORT",
                   help="also serve openpi's websocket policy protocol (openpi-client, LIBERO example) on PORT")
    p.add_argument("--openpi-host", default="127.0.0.1", help="bind address of the openpi bridge (default: loopback)")
    p.add_argument("--ready-file", help=argparse.SUPPRESS)
    p.set_defaults(run=_serve)

    p = sub.add_parser("serve-planner", help="serve the planner alone (for `serve --planner-address`)")
    _add_model_args(p)
    _add_server_args(p, 50052)
    p.add_argument("--address", help="bind this address instead of --host/--port (e.g. unix:/tmp/planner.sock)")
    p.add_argument("--vocab", choices=["ascii", "all"], default="ascii", help="tokens the planner may emit")
    p.add_argument("--cpus", help="pin this process to these cores")
    p.set_defaults(run=_serve_planner)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (UserFacingError, FileNotFoundError) as err:
        print(f"robot-runtime {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
