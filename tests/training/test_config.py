import pytest

from app.cli import main
from policy.checkpoint import param_shapes
from training import filters
from training.config import ConfigError, config_names, get_config

SEED_CONFIGS = (
    "pi05_subtask_hybrid",
    "pi05_subtask_fast",
    "pi05_action_expert",
    "pi05_custom_lora",
    "pi05_reason_lora",
)

RECIPE_FIELDS = (
    "subtask_loss_weight",
    "fast_loss_weight",
    "flow_loss_weight",
    "knowledge_insulation",
    "trainable",
    "frozen",
)


def test_every_seed_config_has_a_tiny_twin_with_the_same_recipe():
    names = set(config_names())
    for name in SEED_CONFIGS:
        assert {name, name + "_tiny"} <= names
        full, tiny = get_config(name), get_config(name + "_tiny")
        for field in RECIPE_FIELDS:
            assert getattr(full, field) == getattr(tiny, field), (name, field)
        assert (full.model.paligemma.lora_attn is None) == (tiny.model.paligemma.lora_attn is None)

    def weights(name):
        config = get_config(name)
        return config.subtask_loss_weight, config.fast_loss_weight, config.flow_loss_weight

    assert weights("pi05_subtask_hybrid") == (0.15, 0.15, 1.0)
    assert weights("pi05_subtask_fast") == (10.0, 1.0, 0.0)
    assert weights("pi05_action_expert") == (0.0, 0.0, 1.0)
    lora = get_config("pi05_custom_lora")
    assert (lora.lr.peak_lr, lora.lr.decay_lr, lora.lr.decay_steps, lora.lr.warmup_steps) == (3e-4, 1e-5, 10_000, 500)
    assert lora.model.use_quantiles
    optimizer = get_config("pi05_subtask_hybrid").optimizer
    assert (optimizer.b1, optimizer.b2, optimizer.weight_decay, optimizer.clip_gradient_norm) == (0.9, 0.95, 1e-10, 1.0)
    assert get_config("pi05_action_expert").init_from == "{checkpoint_dir}/pi05_subtask_fast/{exp_name}"
    assert get_config("pi05_action_expert_tiny").init_from == "{checkpoint_dir}/pi05_subtask_fast_tiny/{exp_name}"


def test_set_overrides_nested_fields_by_type():
    config = get_config(
        "pi05_subtask_hybrid_tiny",
        [
            "data.path=/data/x",
            "batch_size=4",
            "ema_decay=0.99",
            "lr.peak_lr=1e-3",
            "data.episodes=[0, 2]",
            "model.action_horizon=5",
            "knowledge_insulation=true",
            "init_from=none",
            "data.augment=false",
        ],
    )
    assert config.data.path == "/data/x" and config.batch_size == 4 and config.ema_decay == 0.99
    assert config.lr.peak_lr == 1e-3 and config.data.episodes == (0, 2) and config.model.action_horizon == 5
    assert config.knowledge_insulation is True and config.init_from is None and config.data.augment is False
    bad_sets = (
        ("nope=1", "no field 'nope'"),
        ("batch_size=many", "cannot parse"),
        ("batch_size", "key=value"),
        ("knowledge_insulation=maybe", "true or false"),
        ("lr.peak_lr.x=1", "not a nested"),
    )
    for bad, message in bad_sets:
        with pytest.raises(ConfigError, match=message):
            get_config("pi05_subtask_hybrid_tiny", [bad])
    with pytest.raises(ConfigError, match="unknown training config"):
        get_config("pi0_libero")


def test_cli_lists_configs_and_reports_user_errors(capsys, tmp_path):
    assert main(["train", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in SEED_CONFIGS)
    assert main(["train", "pi05_subtask_hybrid_tiny", "--exp-name", "x", "--set", f"checkpoint_dir={tmp_path}"]) == 2
    assert "data.path" in capsys.readouterr().err
    assert main(["train", "pi05_subtask_hybrid_tiny"]) == 2
    assert main(["compute-norm-stats", "--config", "nope"]) == 2
    assert not any(tmp_path.iterdir())


def _paths(config_name: str) -> list[str]:
    return sorted(param_shapes(get_config(config_name).model))


def test_ki_stage_filters_split_vlm_and_action_expert():
    paths = _paths("pi05_subtask_hybrid_tiny")
    stage2 = get_config("pi05_action_expert_tiny")
    trainable, frozen = filters.split_trainable(paths, stage2.trainable, stage2.frozen)
    assert trainable and frozen
    assert all("_1/" in p or p.startswith(("action_", "time_mlp")) for p in trainable)
    assert any(p.startswith("PaliGemma/img") for p in frozen)
    assert "PaliGemma/llm/embedder/input_embedding" in frozen
    assert "PaliGemma/llm/layers/mlp_1/gating_einsum" in trainable
    stage1 = get_config("pi05_subtask_fast_tiny")
    _, frozen1 = filters.split_trainable(paths, stage1.trainable, stage1.frozen)
    assert sorted(frozen1) == sorted(trainable)


def test_lora_filter_freezes_base_language_weights_only():
    paths = _paths("pi05_custom_lora_tiny")
    config = get_config("pi05_custom_lora_tiny")
    trainable, frozen = filters.split_trainable(paths, config.trainable, config.frozen)
    assert any("lora" in p for p in trainable) and not any("lora" in p for p in frozen)
    assert all("llm" in p for p in frozen)
    assert "PaliGemma/llm/layers/attn/q_einsum/w" in frozen and "PaliGemma/llm/layers/attn/q_einsum/lora_a" in trainable
