"""Every package's `__init__.py` lists its public names in `__all__` and imports each lazily (PEP 562), so that
importing a package stays cheap: the robot client loads no jax, the sim no mujoco before `sim.render` chose the
GL backend, the CLI's `--help` no jax. The import checks run in fresh interpreters, apart from this process's
own imports."""

from __future__ import annotations

import ast
import importlib
import json
import pathlib
import pkgutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ["protos", "policy", "planner", "actor", "training", "client", "runtime", "sim", "app"]


def run_python(code: str) -> str:
    """Runs `code` in a fresh interpreter at the repository root; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def loaded_after(statement: str, prefixes: list[str]) -> list[str]:
    """The modules named by (or under) `prefixes` that a fresh interpreter holds after `statement`."""
    code = (
        f"import json, sys\n{statement}\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {prefixes!r})))"
    )
    return json.loads(run_python(code).splitlines()[-1])


def type_checking_imports(package: str) -> dict[str, str]:
    """Name → module of the `from X import Y` lines under `if TYPE_CHECKING:` in the package's `__init__.py`."""
    tree = ast.parse((ROOT / package / "__init__.py").read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module, ast.dump(imp)
                found.update({alias.asname or alias.name: imp.module for alias in imp.names})
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_init_lists_its_public_names_once(package):
    module = importlib.import_module(package)
    assert module.__doc__ and module.__doc__.strip()
    public = module.__all__
    assert len(public) == len(set(public)), "a name is listed twice"
    lazy = {name: source for source, names in module._EXPORTS.items() for name in names}
    assert set(lazy) <= set(public)
    # the names __all__ lists beyond the lazy ones the package defines itself
    assert all(name in vars(module) for name in set(public) - set(lazy))
    # type checkers see the same names from the same submodules
    assert type_checking_imports(package) == lazy
    # a name that is also a submodule would be shadowed by the submodule once that is imported
    submodules = {info.name for info in pkgutil.iter_modules(module.__path__)}
    assert not submodules & set(public)
    assert set(public) <= set(dir(module))
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018


def test_every_public_name_resolves():
    """Each name in each `__all__` resolves, in a fresh interpreter (it imports every submodule)."""
    code = (
        "import importlib, json\n"
        "missing = {}\n"
        f"for package in {PACKAGES!r}:\n"
        "    module = importlib.import_module(package)\n"
        "    missing[package] = [name for name in module.__all__ if getattr(module, name, None) is None]\n"
        "print(json.dumps(missing))\n"
    )
    missing = json.loads(run_python(code).splitlines()[-1])
    assert missing == {package: [] for package in PACKAGES}


def test_importing_a_package_loads_none_of_its_submodules():
    for package in PACKAGES:
        loaded = loaded_after(f"import {package}", PACKAGES + ["jax", "mujoco"])
        # runtime/__init__.py defines its constant itself; nothing else comes along
        assert loaded == [package], (package, loaded)


def test_sim_does_not_import_mujoco():
    assert loaded_after("import sim", ["mujoco"]) == []


@pytest.mark.parametrize("statement", ["import protos", "import client", "from client import ActionQueue, RobotClient"])
def test_the_robot_client_loads_no_jax(statement):
    assert loaded_after(statement, ["jax", "policy", "mujoco"]) == []


def test_cli_help_loads_no_jax():
    statement = "from app.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert loaded_after(statement, ["jax", "mujoco"]) == []
