# The two entry points: `make demo` (the bundled policy in closed loop) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Optional extras installed with the project; `libero` brings LIBERO for sim/libero.py and its tests.
EXTRAS ?= dev,libero
# Exact versions of everything installed (see `make lock`), and the pip that installs them.
LOCK := requirements/lock.txt
PIP_VERSION := 26.3

# `make demo` needs the project alone; its stamp is separate so that it never skips the test extras' install.
DEMO_STAMP := $(VENV)/.installed-demo
BUNDLE ?= bundles/builtin
DEMO_EPISODES ?= 5
DEMO_OUT ?= runs/demo

.PHONY: demo bundle gate fuzz bench-openpi lint lock test test-slow venv sysdeps clean

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip==$(PIP_VERSION)'
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[$(EXTRAS)]'
	# openpi-client pins numpy<2 (jax needs >=2); the modules our bridge test uses need nothing it lacks.
	$(BIN)/python -m pip install --quiet --no-deps -c $(LOCK) openpi-client
	@touch $(STAMP)

venv: $(STAMP)

$(DEMO_STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip==$(PIP_VERSION)'
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e .
	@touch $(DEMO_STAMP)

# Refreshes $(LOCK): a scratch venv takes the newest releases pyproject.toml allows, and their exact versions
# become the pins that every install above uses. Run `make test` on the result before committing it.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade 'pip==$(PIP_VERSION)'
	.venv-lock/bin/python -m pip install --quiet -e '.[$(EXTRAS)]'
	.venv-lock/bin/python -m pip install --quiet --no-deps 'openpi-client==0.1.2'
	{ sed -n '/^#/p' $(LOCK); .venv-lock/bin/python -m pip freeze --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK) && rm -rf .venv-lock

# Serves the bundled checkpoint (planner + actor processes) and runs DEMO_EPISODES episodes of every built-in
# task through it: subtask changes are printed as they happen, mp4s and results.json land in DEMO_OUT.
demo: $(DEMO_STAMP) sysdeps
	MUJOCO_GL=$${MUJOCO_GL:-osmesa} $(BIN)/robot-runtime rollout --env builtin:all --checkpoint $(BUNDLE) \
		--episodes $(DEMO_EPISODES) --seed 0 --workers 2 --image-size 64 --video --out $(DEMO_OUT)

# Re-creates bundles/builtin from scratch: record, norm stats, one training run (resumed if interrupted), copy.
bundle: $(STAMP) sysdeps
	MUJOCO_GL=$${MUJOCO_GL:-osmesa} PATH=$(abspath $(BIN)):$$PATH bash bundles/recreate_builtin.sh

# The learnability gate: record one scene, train on it from scratch for a few CPU-minutes, serve, score (≥ 9/10).
gate: $(STAMP) sysdeps
	MUJOCO_GL=$${MUJOCO_GL:-osmesa} PATH=$(abspath $(BIN)):$$PATH bash bundles/learnability_gate.sh

# The long hostile-client run against a live runtime (5000 cases); prints one JSON line, exits 1 on a failed bound.
fuzz: $(STAMP)
	$(BIN)/python bench/fuzz_session.py --cases 5000

# Our pi0.5 against openpi's own implementation, side by side (chunk and decode latency, cold start, peak RSS,
# roofline): `make bench-openpi OPENPI=/path/to/openpi`. openpi's pinned jax goes into .venv-openpi on first use.
bench-openpi: $(STAMP)
	$(BIN)/python bench/vs_openpi.py --openpi "$(OPENPI)"

# Off-screen OpenGL for MuJoCo rendering on machines without a GPU (Debian/Ubuntu package libosmesa6), and the
# GL/GLib libraries that LIBERO's GUI opencv-python build loads (libgl1, libglib2.0-0).
sysdeps:
	@if ! ldconfig -p 2>/dev/null | grep -q libOSMesa || ! ldconfig -p 2>/dev/null | grep -q 'libGL\.so\.1' \
		|| ! ldconfig -p 2>/dev/null | grep -q libgthread-2.0; then \
		echo "installing libosmesa6 libgl1 libglib2.0-0 (MuJoCo off-screen rendering, OpenCV)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libosmesa6 libgl1 libglib2.0-0 >/dev/null; \
	fi

test: $(STAMP) sysdeps lint
	MUJOCO_GL=$${MUJOCO_GL:-osmesa} $(BIN)/python -m pytest -q

# ruff's lint rules and formatting, the import contract of the layers and the mypy type checker (all configured in
# pyproject.toml); `ruff format .` fixes the formatting.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test-slow: $(STAMP) sysdeps
	MUJOCO_GL=$${MUJOCO_GL:-osmesa} $(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) .pytest_cache runs
