"""`robot-runtime`: one command with a subcommand per job. Heavy imports happen inside each subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from policy.errors import UserFacingError
from protos.wire import WireError
from runtime import DEFAULT_WAIT_FOR_SUBTASK_MS


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

    from planner.decoder import DEFAULT_MAX_NEW_TOKENS
    from planner.query import (
        Query,
        ask_server,
        parse_image_specs,
        reasoning_json,
        result_json,
        run_query,
        run_reasoning_query,
    )
    from planner.reasoning import DEFAULT_MAX_REASONING_TOKENS

    images = parse_image_specs(args.image)
    max_tokens = args.max_tokens
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_REASONING_TOKENS if args.reasoning else DEFAULT_MAX_NEW_TOKENS
    if args.server:
        if args.reasoning:
            raise UserError("--reasoning decodes locally: give --checkpoint DIR instead of --server")
        token = _token(args)
        tls_ca = pathlib.Path(args.tls_ca) if args.tls_ca else None
        result = ask_server(args.server, images, args.task, max_new_tokens=max_tokens, token=token, tls_ca=tls_ca)
        print(json.dumps(result_json(result)) if args.json else result.text)
        return 0
    if not args.checkpoint:
        raise UserError("give --checkpoint DIR (decode locally) or --server ADDR (ask a running planner)")
    _compile_cache(args)
    query = Query(
        checkpoint=pathlib.Path(args.checkpoint),
        images=images,
        task=args.task,
        tokenizer=pathlib.Path(args.tokenizer) if args.tokenizer else None,
        config_name=args.config,
        max_new_tokens=max_tokens,
        vocab=args.vocab,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        warm_up=args.warm_up,
        last_reasoning=args.last_reasoning,
    )
    if args.reasoning:
        step = run_reasoning_query(query)
        print(json.dumps(reasoning_json(step)) if args.json else f"{step.decision}: {step.text}")
        return 0
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
    import pathlib

    from protos.grpc_server import Security

    try:
        return Security(
            tls_cert=pathlib.Path(args.tls_cert) if args.tls_cert else None,
            tls_key=pathlib.Path(args.tls_key) if args.tls_key else None,
            token=_token(args),
        )
    except ValueError as err:
        raise UserError(str(err)) from err


def _token(args: argparse.Namespace) -> str | None:
    """--token, else --token-file, else ROBOT_RUNTIME_TOKEN (the file and the variable stay out of `ps`)."""
    from protos.grpc_server import read_token

    if args.token:
        return args.token
    try:
        return read_token(args.token_file)
    except ValueError as err:
        raise UserError(str(err)) from err


def _compile_cache(args: argparse.Namespace) -> str:
    """Turns on JAX's persistent compilation cache for this process as --compile-cache says → the directory or
    "off", logged, and passed on as it is to the processes this one starts."""
    import logging

    from policy.compile_cache import OFF, enable_compile_cache

    path = enable_compile_cache(args.compile_cache)
    logging.getLogger("robot_runtime").info("compilation cache: %s", path or OFF)
    return str(path) if path else OFF


def _configure_logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("absl", "jax", "orbax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _serve(args: argparse.Namespace) -> int:
    import pathlib

    from runtime.serve import RuntimeOptions, parse_cameras, run_async, serve_runtime, set_cpu_affinity

    _configure_logging()
    compile_cache = _compile_cache(args)
    set_cpu_affinity(args.actor_cpus)
    try:
        cameras = parse_cameras(args.camera)
    except ValueError as err:
        raise UserError(str(err)) from err
    if args.noise_scale is not None and not 0 <= args.noise_scale < float("inf"):
        raise UserError(f"--noise-scale must be a finite number >= 0, got {args.noise_scale}")
    for flag, value in (("--max-batch", args.max_batch), ("--planner-max-batch", args.planner_max_batch)):
        if value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    options = RuntimeOptions(
        model=_model_source(args),
        address=f"{args.host}:{args.port}",
        planner_address=args.planner_address,
        planner_interval_s=args.planner_interval,
        wait_for_subtask_ms=args.wait_for_subtask_ms,
        noise_scale=args.noise_scale,
        cameras=cameras,
        action_dims=args.action_dims,
        state_dims=args.state_dims,
        max_batch=args.max_batch,
        planner_max_batch=args.planner_max_batch,
        max_wait_ms=args.max_wait_ms,
        num_steps=args.num_steps,
        security=_security(args),
        max_message_mb=args.max_message_mb,
        planner_cpus=args.planner_cpus,
        planner_devices=args.planner_devices,
        planner_max_tokens=args.max_tokens,
        reasoning=args.reasoning,
        ready_file=pathlib.Path(args.ready_file) if args.ready_file else None,
        openpi_port=args.openpi_port,
        openpi_host=args.openpi_host,
        compile_cache=compile_cache,
    )
    run_async(serve_runtime(options))
    return 0


def _serve_planner(args: argparse.Namespace) -> int:
    from runtime.serve import PlannerOptions, run_async, serve_planner, set_cpu_affinity

    _configure_logging()
    _compile_cache(args)
    set_cpu_affinity(args.cpus)
    address = args.address or f"{args.host}:{args.port}"
    if args.max_batch < 1:
        raise UserError(f"--max-batch must be >= 1, got {args.max_batch}")
    options = PlannerOptions(
        model=_model_source(args),
        address=address,
        max_tokens=args.max_tokens,
        vocab=args.vocab,
        reasoning=args.reasoning,
        security=_security(args),
        max_message_mb=args.max_message_mb,
        max_batch=args.max_batch,
    )
    run_async(serve_planner(options))
    return 0


def _builtin_tasks(env: str) -> list[str]:
    from sim.envspec import EnvSpecError, parse_env

    try:
        selection = parse_env(env)
    except EnvSpecError as err:
        raise UserError(str(err)) from err
    if selection.kind != "builtin":
        raise UserError(f"--env {env}: record writes built-in tasks only (builtin:TASK or builtin:all)")
    return list(selection.tasks)


def _record(args: argparse.Namespace) -> int:
    tasks = _builtin_tasks(args.env)
    if args.episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {args.episodes}")
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if args.image_size < 16:
        raise UserError(f"--image-size must be >= 16 pixels, got {args.image_size}")
    if not args.action_noise >= 0:
        raise UserError(f"--action-noise must be >= 0, got {args.action_noise}")
    if not 0 <= args.mistakes <= 1:
        raise UserError(f"--mistakes must be a probability in [0, 1], got {args.mistakes}")
    if not 0 <= args.detours <= 1:
        raise UserError(f"--detours must be a probability in [0, 1], got {args.detours}")
    if args.first_frames is not None and args.first_frames < 1:
        raise UserError(f"--first-frames must be >= 1, got {args.first_frames}")
    import pathlib

    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UserError(f"--out {out} exists and is not empty; pass --overwrite to replace it")

    from sim.recorder import record

    try:
        summary = record(
            tasks,
            args.episodes,
            out,
            seed=args.seed,
            workers=args.workers,
            image_size=args.image_size,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            action_noise=args.action_noise,
            mistakes=args.mistakes,
            locations=args.locations,
            detours=args.detours,
            same_scene=args.same_scene,
            first_frames=args.first_frames,
        )
    except RuntimeError as err:
        raise UserError(str(err)) from err
    print(
        f"recorded {summary['episodes']} episodes ({summary['frames']} frames, {summary['tasks']} instructions) "
        f"of {', '.join(tasks)} to {summary['out_dir']} in {summary['seconds']:.1f} s; "
        f"{summary['failed']} failed expert episodes dropped"
    )
    return 0


def _rollout_policy(args: argparse.Namespace):
    import pathlib

    from sim.rollout import PolicySpec

    chosen = [
        flag
        for flag, value in (("--server", args.server), ("--checkpoint", args.checkpoint), ("--policy", args.policy))
        if value
    ]
    if len(chosen) != 1:
        raise UserError(
            "give exactly one of --server ADDR, --checkpoint DIR or --policy scripted"
            + (f" (got {' and '.join(chosen)})" if chosen else "")
        )
    if args.policy and args.policy != "scripted":
        raise UserError(f"--policy {args.policy!r}: the only built-in policy is 'scripted'")
    if args.tokenizer and not args.checkpoint:
        raise UserError("--tokenizer goes with --checkpoint")
    if args.checkpoint and not pathlib.Path(args.checkpoint).is_dir():
        raise UserError(f"--checkpoint {args.checkpoint}: no such directory")
    if args.timeout <= 0:
        raise UserError(f"--timeout must be > 0, got {args.timeout}")
    token = _token(args)
    if args.policy:
        return PolicySpec("scripted")
    servers = tuple(address.strip() for address in (args.server or "").split(",") if address.strip())
    if args.server and not servers:
        raise UserError(f"--server {args.server!r}: give host:port, or several separated by commas")
    return PolicySpec(
        "remote",
        address=servers[0] if servers else "",
        token=token,
        timeout_s=args.timeout,
        servers=servers if len(servers) > 1 else (),
    )


def _rollout(args: argparse.Namespace) -> int:
    import dataclasses
    import pathlib
    import time

    from app.local_server import ServerStartError, local_server
    from sim.envspec import EnvSpecError, parse_env
    from sim.rollout import RolloutConfig, RolloutError, format_table, plan_jobs, rollout

    try:
        selection = parse_env(args.env, args.tasks or ())
    except EnvSpecError as err:
        raise UserError(str(err)) from err
    policy = _rollout_policy(args)
    if args.max_steps is not None and args.max_steps < 1:
        raise UserError(f"--max-steps must be >= 1, got {args.max_steps}")
    if args.image_size < 16:
        raise UserError(f"--image-size must be >= 16 pixels, got {args.image_size}")
    out = pathlib.Path(args.out or f"runs/rollout-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory")
    config = RolloutConfig(
        selection=selection,
        episodes=args.episodes,
        policy=policy,
        out_dir=out,
        workers=args.workers,
        video=args.video,
        seed=args.seed,
        same_scene=args.same_scene,
        replan_steps=args.replan_steps,
        image_size=args.image_size,
        max_steps=args.max_steps,
        libero_prompt=args.libero_prompt,
        quiet=args.quiet,
    )
    narrowed = f" tasks {','.join(selection.tasks)}" if selection.kind == "libero" and selection.tasks else ""
    source = f"checkpoint {args.checkpoint}" if args.checkpoint else policy.label
    print(
        f"rollout: {selection.label}{narrowed}, {args.episodes} episodes per task, {source}, "
        f"{args.workers} worker(s) -> {out}",
        flush=True,
    )
    try:
        plan_jobs(config)  # a bad selection fails here, before a runtime spends a minute starting
        if args.checkpoint:
            log = out / "serve.log"
            with local_server(args.checkpoint, log, tokenizer=args.tokenizer, token=policy.token) as address:
                print(f"rollout: runtime serving {args.checkpoint} on {address}", flush=True)
                results = rollout(dataclasses.replace(config, policy=dataclasses.replace(policy, address=address)))
        else:
            results = rollout(config)
    except (RolloutError, ServerStartError) as err:
        raise UserError(str(err)) from err
    for line in format_table(results):
        print(line)
    print(f"results: {out / 'results.json'}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from training.config import config_names, describe, get_config

    if args.list:
        for name in config_names():
            print(describe(get_config(name)))
        return 0
    if not args.config:
        raise UserError("name a training config (see `robot-runtime train --list`)")
    if not args.exp_name:
        raise UserError("--exp-name is required: runs go to <checkpoint_dir>/<config>/<exp-name>")
    _configure_logging()
    if args.num_processes > 1:
        from training import distributed

        if not args.coordinator:
            raise UserError("--num-processes > 1 needs --coordinator HOST:PORT (process 0's address)")
        if not 0 <= args.process_id < args.num_processes:
            raise UserError(f"--process-id must be in [0, {args.num_processes}), got {args.process_id}")
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    from training.loop import train

    config = get_config(args.config, args.set)
    result = train(config, args.exp_name, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    last = result.records[-1] if result.records else {}
    terms = ", ".join(f"{k} {last[k]:.4g}" for k in ("loss", "subtask_ce", "fast_ce", "flow_mse") if k in last)
    print(f"trained {config.name} to step {result.last_step}: {terms}")
    print(f"checkpoint: {result.last_checkpoint}")
    return 0


def _compute_norm_stats(args: argparse.Namespace) -> int:
    from training.config import get_config
    from training.norm_stats import compute_norm_stats

    config = get_config(args.config, args.set)
    path, stats = compute_norm_stats(config, progress=not args.no_progress)
    dims = ", ".join(f"{key} {value.dim}" for key, value in stats.items())
    print(f"wrote {path} ({dims} dims)")
    return 0


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="model directory (params/, assets/, model_config.json)")
    p.add_argument("--tokenizer", help="SentencePiece model (default: the checkpoint's tokenizer.model)")
    p.add_argument("--config", help="model config name, for checkpoints without model_config.json")
    p.add_argument("--asset-id", help="which assets/ASSET_ID/norm_stats.json to use when there are several")


def _add_compile_cache_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--compile-cache",
        metavar="DIR|off",
        help="keep compiled executables in DIR, so that a restart reads them instead of compiling, or off "
        "(default: $ROBOT_RUNTIME_COMPILE_CACHE, else $JAX_COMPILATION_CACHE_DIR, else "
        "$XDG_CACHE_HOME/robot-runtime/xla, ~/.cache/robot-runtime/xla)",
    )


def _add_server_args(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=port)
    p.add_argument("--tls-cert", help="PEM certificate chain; with --tls-key enables TLS")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--token", help="require 'authorization: Bearer TOKEN' (visible in ps: prefer --token-file)")
    p.add_argument("--token-file", help="read the required bearer token from this file (or set ROBOT_RUNTIME_TOKEN)")
    p.add_argument("--max-message-mb", type=int, default=64, help="largest gRPC message accepted or sent")
    p.add_argument("--max-tokens", type=int, help="most tokens the planner decodes (default 20; 48 with --reasoning)")
    _add_compile_cache_arg(p)
    p.add_argument(
        "--reasoning",
        action="store_true",
        help="reasoning checkpoint (seed 002): the planner thinks or acts, the actor runs the act row",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robot-runtime", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init-checkpoint", help="write a random-weight checkpoint, tokenizer and norm stats")
    p.add_argument("--config", required=True, help="model config name (tiny, dummy, pi05, pi05_lora, pi0)")
    p.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--asset-id", default="default", help="norm stats go to assets/ASSET_ID/norm_stats.json")
    p.add_argument(
        "--dtype", choices=["bfloat16", "float32"], help="inference dtype (config default): the config and the weights"
    )
    p.set_defaults(run=_init_checkpoint)

    p = sub.add_parser("check-parity", help="compare the network with an openpi reference fixture")
    p.add_argument("fixture_dir", help="directory with meta.json, io.npz and params/")
    p.set_defaults(run=_check_parity)

    p = sub.add_parser("plan", help="decode the next subtask for camera images and a task")
    p.add_argument("--checkpoint", help="model directory (params/, assets/, model_config.json): decode locally")
    p.add_argument("--server", metavar="ADDR", help="ask a running planner (`serve-planner`) at host:port instead")
    p.add_argument("--token", help="bearer token for --server (visible in ps: prefer --token-file)")
    p.add_argument("--token-file", help="read the bearer token from this file (or set ROBOT_RUNTIME_TOKEN)")
    p.add_argument("--tls-ca", help="PEM root certificate to verify a TLS --server")
    p.add_argument("--tokenizer", help="SentencePiece model (default: the checkpoint's tokenizer.model)")
    p.add_argument("--image", action="append", default=[], metavar="CAMERA=PATH", help="e.g. base_0_rgb=cam0.png")
    p.add_argument("--task", required=True, help='what the robot should do, e.g. "put the red cube in the bowl"')
    p.add_argument("--max-tokens", type=int, help="most tokens to decode (default 20; 48 with --reasoning)")
    p.add_argument("--vocab", choices=["ascii", "all"], default="ascii", help="tokens the planner may emit")
    p.add_argument("--config", help="model config name, for checkpoints without model_config.json")
    p.add_argument(
        "--reasoning",
        action="store_true",
        help="reasoning checkpoint (seed 002): print think or act, and the reasoning when it thinks",
    )
    p.add_argument(
        "--last-reasoning", metavar="TEXT", help="with --reasoning: the latest reasoning, the context instead of --task"
    )
    p.add_argument("--temperature", type=float, default=0.0, help="0 decodes greedily")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus size when sampling")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--warm-up", action="store_true", help="decode black images first, so the timings are warm")
    _add_compile_cache_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text")
    p.set_defaults(run=_plan)

    p = sub.add_parser("serve", help="serve robots: the runtime (actor) process, with a local planner process")
    _add_model_args(p)
    _add_server_args(p, 50051)
    p.add_argument("--planner-address", help="use a running `serve-planner` (host:port or unix:PATH) instead")
    p.add_argument(
        "--planner-interval",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="least time between two plans of one session (default: whenever the planner is free)",
    )
    p.add_argument(
        "--wait-for-subtask-ms",
        type=float,
        default=DEFAULT_WAIT_FOR_SUBTASK_MS,
        help="a session's first chunk waits up to this long for the planner's first subtask, so the actor "
        "never acts on a prompt it was not trained on (default %(default)g; 0: act on the task at once)",
    )
    p.add_argument(
        "--noise-scale",
        type=float,
        metavar="S",
        help="standard deviation of the flow's starting noise (default: the checkpoint's serving.json, "
        "else 1 as openpi)",
    )
    p.add_argument(
        "--camera",
        action="append",
        metavar="NAME=MODEL_KEY",
        help="robot camera name → model image key (default: agentview=base_0_rgb wrist=left_wrist_0_rgb)",
    )
    p.add_argument("--action-dims", type=int, help="action dims sent to the robot (default: the norm stats')")
    p.add_argument("--state-dims", type=int, help="state dims expected from the robot (default: the norm stats')")
    p.add_argument("--max-batch", type=int, default=8, help="most sessions sampled together")
    p.add_argument(
        "--planner-max-batch",
        type=int,
        default=4,
        help="most sessions' observations the planner decodes together (one prefill)",
    )
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="how long a batch waits for more sessions")
    p.add_argument("--num-steps", type=int, default=10, help="Euler steps per chunk")
    p.add_argument("--actor-cpus", help="pin the runtime process to these cores, e.g. 0 or 0-3")
    p.add_argument("--planner-cpus", help="pin the local planner process to these cores, e.g. 1")
    p.add_argument("--planner-devices", help="CUDA_VISIBLE_DEVICES for the local planner process")
    p.add_argument(
        "--openpi-port",
        type=int,
        metavar="PORT",
        help="also serve openpi's websocket policy protocol (openpi-client, LIBERO example) on PORT",
    )
    p.add_argument("--openpi-host", default="127.0.0.1", help="bind address of the openpi bridge (default: loopback)")
    p.add_argument("--ready-file", help=argparse.SUPPRESS)
    p.set_defaults(run=_serve)

    p = sub.add_parser("record", help="record scripted-expert episodes of built-in tasks as a LeRobot v2.1 dataset")
    p.add_argument("--env", required=True, help="builtin:TASK or builtin:all (tasks alternate episode by episode)")
    p.add_argument("--episodes", type=int, required=True, help="successful episodes to keep, in all")
    p.add_argument("--out", required=True, help="dataset directory (must not exist or be empty)")
    p.add_argument("--seed", type=int, default=0, help="attempt k uses seed SEED + k")
    p.add_argument("--workers", type=int, default=1, help="episodes recorded in parallel processes")
    p.add_argument("--image-size", type=int, default=224, help="camera images are PX x PX")
    p.add_argument(
        "--action-noise",
        type=float,
        default=0.0,
        metavar="SIGMA",
        help="execute the expert's actions plus N(0, SIGMA²) noise, record the clean ones (DART)",
    )
    p.add_argument(
        "--mistakes",
        type=float,
        default=0.0,
        metavar="P",
        help="with probability P per stage the first grasp misses on purpose; the labels show the recovery",
    )
    p.add_argument(
        "--detours",
        type=float,
        default=0.0,
        metavar="P",
        help="with probability P per stage and move the hand first heads over the wrong object or container; "
        "the labels keep naming the right one",
    )
    p.add_argument(
        "--locations",
        action="store_true",
        help="end every subtask label with its target's table position, e.g. 'move to the red cube <x12><y07>'",
    )
    p.add_argument(
        "--first-frames",
        type=int,
        metavar="N",
        help="keep only each episode's first N frames, from the reset pose on (scenes for localisation training)",
    )
    p.add_argument(
        "--same-scene",
        action="store_true",
        help="every episode on the scene of --seed (the learnability gate's one-scene data)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_record)

    p = sub.add_parser("rollout", help="run episodes of built-in or LIBERO tasks against a policy and score them")
    p.add_argument("--env", required=True, help="builtin:TASK, builtin:all or libero:SUITE (libero:libero_spatial)")
    p.add_argument(
        "--tasks",
        nargs="+",
        metavar="TASK",
        help="narrow builtin:all to these tasks, or a LIBERO suite to these task ids or names",
    )
    p.add_argument("--episodes", type=int, default=50, help="episodes per task (default 50, LIBERO's trials)")
    p.add_argument(
        "--server",
        metavar="ADDR[,ADDR...]",
        help="a running runtime (host:port); several, comma-separated, share the episodes (worker w uses the "
        "w-th modulo their number, so give --workers >= their number)",
    )
    p.add_argument("--checkpoint", metavar="DIR", help="start a local runtime serving this checkpoint")
    p.add_argument("--tokenizer", metavar="PATH", help="with --checkpoint: the SentencePiece model")
    p.add_argument("--policy", metavar="NAME", help="'scripted': the built-in experts, no runtime")
    p.add_argument("--token", help="bearer token for the runtime (visible in ps: prefer --token-file)")
    p.add_argument("--token-file", help="read the bearer token from this file (or set ROBOT_RUNTIME_TOKEN)")
    p.add_argument("--workers", type=int, default=1, help="worker processes, each running its own episodes")
    p.add_argument("--out", help="output directory (default runs/rollout-TIME)")
    p.add_argument("--video", action="store_true", help="write an mp4 per episode with the subtask on each frame")
    p.add_argument(
        "--seed", type=int, help="built-in: episode k uses seed SEED + k (default 0); LIBERO: the env seed (default 7)"
    )
    p.add_argument(
        "--same-scene",
        action="store_true",
        help="built-in: every episode on the scene of --seed (the policy's sampling still differs)",
    )
    p.add_argument(
        "--replan-steps",
        type=int,
        help="control steps between chunk requests (default: 2 on built-in tasks, 5 on LIBERO as openpi)",
    )
    p.add_argument("--max-steps", type=int, help="step budget per episode (default: the task's or suite's)")
    p.add_argument("--image-size", type=int, default=224, help="camera images sent to the policy are PX x PX")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one chunk")
    p.add_argument(
        "--libero-prompt",
        choices=["auto", "task", "bddl"],
        default="auto",
        help="LIBERO instruction: the suite's task language or the BDDL file's (auto: task for the "
        "standard suites, bddl for LIBERO-PRO)",
    )
    p.add_argument("--quiet", action="store_true", help="do not print subtask changes")
    p.set_defaults(run=_rollout)

    p = sub.add_parser("train", help="train a pi0.5 config on a local LeRobot dataset (see --list)")
    p.add_argument("config", nargs="?", help="training config name, e.g. pi05_subtask_hybrid")
    p.add_argument("--exp-name", help="run name: checkpoints go to <checkpoint_dir>/<config>/<exp-name>")
    run_mode = p.add_mutually_exclusive_group()
    run_mode.add_argument("--overwrite", action="store_true", help="delete an earlier run of this name first")
    run_mode.add_argument("--resume", action="store_true", help="continue an earlier run from its latest checkpoint")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. data.path=/data/libero batch_size=8 (repeatable)",
    )
    p.add_argument("--list", action="store_true", help="print the training configs and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    multi = p.add_argument_group("several processes or hosts (jax.distributed; see training/distributed.py)")
    multi.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address, the same on every process")
    multi.add_argument("--num-processes", type=int, default=1, help="processes in the run (default 1)")
    multi.add_argument("--process-id", type=int, default=0, help="this process's rank, 0 .. num-processes-1")
    p.set_defaults(run=_train)

    p = sub.add_parser("compute-norm-stats", help="write a training config's norm_stats.json from its dataset")
    p.add_argument("--config", required=True, help="training config name (see `train --list`)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_compute_norm_stats)

    p = sub.add_parser("serve-planner", help="serve the planner alone (for `serve --planner-address`)")
    _add_model_args(p)
    _add_server_args(p, 50052)
    p.add_argument("--address", help="bind this address instead of --host/--port (e.g. unix:/tmp/planner.sock)")
    p.add_argument("--vocab", choices=["ascii", "all"], default="ascii", help="tokens the planner may emit")
    p.add_argument("--cpus", help="pin this process to these cores")
    p.add_argument(
        "--max-batch", type=int, default=4, help="most sessions' observations decoded together (one prefill)"
    )
    p.set_defaults(run=_serve_planner)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (UserFacingError, WireError, FileNotFoundError) as err:
        print(f"robot-runtime {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
