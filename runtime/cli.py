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
