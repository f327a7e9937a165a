"""The application layer: the `robot-runtime` CLI (`app.cli`), the local server behind `rollout --checkpoint`
(`app.local_server`) and the evaluation tools (`python -m app.planner_eval`, `python -m app.actor_eval`). It
composes every other package; nothing imports it."""
