"""Regenerates the Python code of the wire API: `python -m protos.generate` (run from the repository root).

The .proto files are compiled with the repository root as include path, so the generated modules import each
other as `protos.robot_runtime.v1...`. tests/protos checks that the committed code matches the .proto files.
"""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTO_FILES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "protos").rglob("*.proto"))


def protoc_args(out_dir: pathlib.Path, *extra: str) -> list[str]:
    from grpc_tools import protoc

    include = pathlib.Path(protoc.__file__).parent / "_proto"
    return [
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *extra,
        *PROTO_FILES,
    ]


def generate(out_dir: pathlib.Path = ROOT, *extra: str) -> None:
    from grpc_tools import protoc

    code = protoc.main(protoc_args(out_dir, *extra))
    if code != 0:
        raise RuntimeError(f"protoc failed with exit status {code}")


if __name__ == "__main__":
    generate()
    print(f"generated Python code for {', '.join(PROTO_FILES)}", file=sys.stderr)
