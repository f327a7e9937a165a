import json
from pathlib import Path

import numpy as np
import pytest

from policy.normalize import NormStats, RunningStats, load_norm_stats, normalize, save_norm_stats, unnormalize


@pytest.fixture
def stats() -> NormStats:
    return NormStats(
        mean=[0.5, -1.0, 2.0],
        std=[2.0, 0.5, 1.0],
        q01=[-1.0, -2.0, 0.0],
        q99=[3.0, 0.0, 10.0],
    )


def test_norm_stats_are_read_only_float32(stats: NormStats) -> None:
    assert stats.mean.dtype == np.float32 and stats.q99.dtype == np.float32
    assert stats.dim == 3 and stats.has_quantiles
    with pytest.raises(ValueError):
        stats.mean[0] = 1.0


def test_norm_stats_validation() -> None:
    with pytest.raises(ValueError, match="q01 and q99"):
        NormStats(mean=[0.0], std=[1.0], q01=[0.0])
    with pytest.raises(ValueError, match="differ in length"):
        NormStats(mean=[0.0, 1.0], std=[1.0])
    with pytest.raises(ValueError, match="1-D"):
        NormStats(mean=[[0.0]], std=[[1.0]])


def test_zscore_formula_and_round_trip(stats: NormStats) -> None:
    x = np.array([[1.5, -1.0, 0.0], [0.5, 0.0, 4.0]], dtype=np.float32)
    y = normalize(x, stats)
    np.testing.assert_allclose(y, (x - stats.mean) / (stats.std + 1e-6), rtol=1e-6)
    np.testing.assert_allclose(y[0], [0.5, 0.0, -2.0], rtol=1e-5)
    np.testing.assert_allclose(unnormalize(y, stats), x, rtol=1e-6, atol=1e-6)


def test_quantile_maps_q01_q99_to_unit_range(stats: NormStats) -> None:
    y = normalize(np.stack([stats.q01, stats.q99]), stats, use_quantiles=True)
    np.testing.assert_allclose(y, [[-1, -1, -1], [1, 1, 1]], atol=1e-5)
    x = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)
    back = unnormalize(normalize(x, stats, use_quantiles=True), stats, use_quantiles=True)
    assert back.shape == (4, 5, 3)
    np.testing.assert_allclose(back, x, rtol=1e-5, atol=1e-5)


def test_normalize_fewer_dims_uses_leading_stats(stats: NormStats) -> None:
    x = np.array([2.5, 0.0], dtype=np.float32)
    np.testing.assert_allclose(normalize(x, stats), (x - stats.mean[:2]) / (stats.std[:2] + 1e-6))
    expected = (x - stats.q01[:2]) / (stats.q99[:2] - stats.q01[:2] + 1e-6) * 2 - 1
    np.testing.assert_allclose(normalize(x, stats, use_quantiles=True), expected)


def test_unnormalize_extra_dims_follow_openpi(stats: NormStats) -> None:
    x = np.array([[0.1, 0.2, 0.3, 5.0, -7.0]], dtype=np.float32)
    z = unnormalize(x, stats)
    np.testing.assert_allclose(z[0, :3], x[0, :3] * (stats.std + 1e-6) + stats.mean, rtol=1e-6)
    np.testing.assert_allclose(z[0, 3:], x[0, 3:] * (1.0 + 1e-6), rtol=1e-7)
    q = unnormalize(x, stats, use_quantiles=True)
    np.testing.assert_allclose(q[0, :3], (x[0, :3] + 1) / 2 * (stats.q99 - stats.q01 + 1e-6) + stats.q01, rtol=1e-6)
    np.testing.assert_array_equal(q[0, 3:], x[0, 3:])


def test_unsupported_dim_mismatches_raise(stats: NormStats) -> None:
    with pytest.raises(ValueError, match="4-dim"):
        normalize(np.zeros(4), stats)
    with pytest.raises(ValueError, match="2-dim"):
        unnormalize(np.zeros((3, 2)), stats, use_quantiles=True)
    with pytest.raises(ValueError, match="q01 and q99"):
        normalize(np.zeros(1), NormStats(mean=[0.0], std=[1.0]), use_quantiles=True)


def test_json_round_trip(tmp_path: Path, stats: NormStats) -> None:
    plain = NormStats(mean=[0.1, 0.2], std=[1.0, 3.0])
    path = save_norm_stats(tmp_path / "assets" / "libero", {"actions": stats, "state": plain})
    assert path == tmp_path / "assets" / "libero" / "norm_stats.json"
    raw = json.loads(path.read_text())
    assert set(raw) == {"norm_stats"}
    assert raw["norm_stats"]["state"] == {"mean": [0.1, 0.2], "std": [1.0, 3.0], "q01": None, "q99": None}
    loaded = load_norm_stats(path.parent)
    assert set(loaded) == {"actions", "state"}
    for name in ("mean", "std", "q01", "q99"):
        np.testing.assert_array_equal(getattr(loaded["actions"], name), getattr(stats, name))
    assert loaded["state"].q01 is None and loaded["state"].q99 is None
    np.testing.assert_array_equal(load_norm_stats(path)["state"].mean, plain.mean)


def test_loads_openpi_written_file(tmp_path: Path) -> None:
    path = tmp_path / "norm_stats.json"
    path.write_text(
        '{\n  "norm_stats": {\n    "state": {\n      "mean": [1, 2.5],\n      "std": [0.5, 1e-3],\n'
        '      "q01": [0, 2],\n      "q99": [2, 3]\n    }\n  }\n}'
    )
    state = load_norm_stats(tmp_path)["state"]
    np.testing.assert_array_equal(state.mean, np.array([1.0, 2.5], dtype=np.float32))
    np.testing.assert_array_equal(state.q99, np.array([2.0, 3.0], dtype=np.float32))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"stats": {}}', "'norm_stats'"),
        ('{"norm_stats": {"actions": [1, 2]}}', "norm_stats.actions must be an object"),
        ('{"norm_stats": {"actions": {"std": [1.0]}}}', "norm_stats.actions.mean is missing"),
        ('{"norm_stats": {"state": {"mean": [0.0], "std": ["x"]}}}', "norm_stats.state.std must be a list"),
        ('{"norm_stats": {"state": {"mean": [0.0], "std": [1.0, 2.0]}}}', "norm_stats.state: .*differ"),
        ('{"norm_stats": {"state": {"mean": [0.0], "std": [NaN]}}}', "norm_stats.state.std holds a non-finite"),
        ('{"norm_stats": {"state": {"mean": [0.0], "std": [1.0], "q01": [0.0]}}}', "norm_stats.state: .*q99"),
    ],
)
def test_malformed_files_name_key_and_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad_stats.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        load_norm_stats(path)
    assert "bad_stats.json" in str(info.value)


def test_missing_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="norm_stats.json"):
        load_norm_stats(tmp_path / "ckpt" / "assets")


def test_running_stats_moments_and_quantiles() -> None:
    data = np.random.default_rng(1).normal(loc=[0.0, 5.0], scale=[1.0, 3.0], size=(20_000, 2))
    running = RunningStats()
    for batch in np.split(data, 10):
        running.update(batch.reshape(100, 20, 2))
    result = running.get_statistics()
    assert running.count == 20_000
    np.testing.assert_allclose(result.mean, data.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.std, data.std(axis=0), rtol=1e-5)
    bin_width = (data.max(axis=0) - data.min(axis=0)) / 5000
    for q, got in ((0.01, result.q01), (0.99, result.q99)):
        assert np.all(np.abs(got - np.quantile(data, q, axis=0)) <= 5 * bin_width)


def test_running_stats_quantile_is_a_bin_left_edge() -> None:
    values = np.repeat(np.arange(100.0), 100)[:, None]
    running = RunningStats()
    running.update(values)
    result = running.get_statistics()
    assert abs(result.q01[0] - 0.0) < 1e-6
    assert 98.0 - 99.0 / 5000 <= result.q99[0] <= 98.0


def test_running_stats_survive_growing_range() -> None:
    data = np.linspace(0.0, 100.0, 10_001)[:, None]
    running = RunningStats()
    for batch in np.array_split(data, 20):
        running.update(batch)
    result = running.get_statistics()
    assert abs(result.q01[0] - 1.0) < 0.2
    assert abs(result.q99[0] - 99.0) < 0.2
    np.testing.assert_allclose(result.mean, [50.0], rtol=1e-6)


def test_running_stats_errors() -> None:
    running = RunningStats()
    running.update(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        running.get_statistics()
    with pytest.raises(ValueError, match="4 dims"):
        running.update(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        running.update(np.full((2, 3), np.nan))
