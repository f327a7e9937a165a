"""openpi-compatible normalization statistics: the `norm_stats.json` file, (un)normalization, and computing them.

File format (openpi's, written with indent 2; `q01`/`q99` may be null or absent):
    {"norm_stats": {"state": {"mean": [...], "std": [...], "q01": [...], "q99": [...]}, "actions": {...}}}

Maths, as openpi's `transforms.Normalize` / `Unnormalize`:
- z-score:  (x - mean) / (std + 1e-6)        inverse  x * (std + 1e-6) + mean
- quantile: (x - q01) / (q99 - q01 + 1e-6) * 2 - 1   inverse  (x + 1) / 2 * (q99 - q01 + 1e-6) + q01
Dimension mismatch, also as openpi: normalizing an x with fewer dims than the stats uses the first
`x.shape[-1]` stats. Unnormalizing an x with more dims (the model's padded action dim) leaves the extra dims
to the stats' padding: z-score pads mean with 0 and std with 1, so extra dims come out as x * (1 + 1e-6);
quantile passes extra dims through untouched. The remaining cases (normalize with more dims, unnormalize with
fewer) are broadcasting errors in openpi and a ValueError here.

Quantiles (`RunningStats`) follow openpi's streaming histogram: 5000 equal bins per dimension spanning the
running [min, max] (padded by 1e-10, relative for large magnitudes); when a batch widens the range, old counts
are re-binned by their bins' left edges. A quantile q is the left edge of the first bin whose cumulative
count reaches q * count, so it is exact to within one bin width (range / 5000). Unlike openpi, the re-binned
range keeps its padding, so counts in the lowest old bin are not dropped when only the max grows. mean and
std are population moments accumulated in float64.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

NORM_STATS_FILENAME = "norm_stats.json"
EPSILON = 1e-6
NUM_QUANTILE_BINS = 5000
_EDGE_PADDING = 1e-10


@dataclasses.dataclass(frozen=True, eq=False)
class NormStats:
    """Per-dimension statistics of one key (e.g. "state"); arrays are read-only float32 vectors."""

    mean: np.ndarray
    std: np.ndarray
    q01: np.ndarray | None = None
    q99: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("mean", "std", "q01", "q99"):
            value = getattr(self, name)
            if value is None:
                continue
            array = np.array(value, dtype=np.float32)
            if array.ndim != 1:
                raise ValueError(f"NormStats.{name} must be a 1-D vector, got shape {array.shape}")
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        if (self.q01 is None) != (self.q99 is None):
            raise ValueError("NormStats needs both q01 and q99, or neither")
        shapes = {name: arr.shape for name, arr in self._arrays().items()}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"NormStats fields differ in length: {shapes}")

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def has_quantiles(self) -> bool:
        return self.q01 is not None

    def _arrays(self) -> dict[str, np.ndarray]:
        fields = {"mean": self.mean, "std": self.std, "q01": self.q01, "q99": self.q99}
        return {k: v for k, v in fields.items() if v is not None}

    def to_json_dict(self) -> dict[str, list[float] | None]:
        return {
            "mean": _json_floats(self.mean),
            "std": _json_floats(self.std),
            "q01": None if self.q01 is None else _json_floats(self.q01),
            "q99": None if self.q99 is None else _json_floats(self.q99),
        }


def _json_floats(vector: np.ndarray) -> list[float]:
    """Shortest decimal that reads back as the same float32, so files stay readable and round-trip exactly."""
    return [float(str(v)) for v in vector]


def normalize(x: npt.ArrayLike, stats: NormStats, *, use_quantiles: bool = False) -> np.ndarray:
    """Map raw values into the model's space (z-score, or quantiles onto [-1, 1])."""
    values = np.asarray(x)
    dim = _last_dim(values)
    if dim > stats.dim:
        raise ValueError(f"cannot normalize {dim}-dim values with {stats.dim}-dim stats")
    if use_quantiles:
        q01, q99 = _quantiles(stats)
        return (values - q01[:dim]) / (q99[:dim] - q01[:dim] + EPSILON) * 2.0 - 1.0
    return (values - stats.mean[:dim]) / (stats.std[:dim] + EPSILON)


def unnormalize(x: npt.ArrayLike, stats: NormStats, *, use_quantiles: bool = False) -> np.ndarray:
    """Inverse of `normalize`; dims beyond the stats are handled as openpi does (see module docstring)."""
    values = np.asarray(x)
    dim = _last_dim(values)
    if dim < stats.dim:
        raise ValueError(f"cannot unnormalize {dim}-dim values with {stats.dim}-dim stats")
    if use_quantiles:
        q01, q99 = _quantiles(stats)
        head = (values[..., : stats.dim] + 1.0) / 2.0 * (q99 - q01 + EPSILON) + q01
        if dim == stats.dim:
            return head
        return np.concatenate([head, values[..., stats.dim :].astype(head.dtype, copy=False)], axis=-1)
    mean = _pad(stats.mean, dim, 0.0)
    std = _pad(stats.std, dim, 1.0)
    return values * (std + EPSILON) + mean


def _last_dim(values: np.ndarray) -> int:
    if values.ndim == 0:
        raise ValueError("values must have at least one dimension")
    return int(values.shape[-1])


def _quantiles(stats: NormStats) -> tuple[np.ndarray, np.ndarray]:
    if stats.q01 is None or stats.q99 is None:
        raise ValueError("quantile normalization needs q01 and q99, which these stats lack")
    return stats.q01, stats.q99


def _pad(vector: np.ndarray, dim: int, value: float) -> np.ndarray:
    if vector.shape[0] >= dim:
        return vector
    return np.concatenate([vector, np.full(dim - vector.shape[0], value, dtype=vector.dtype)])


def norm_stats_path(path_or_dir: str | os.PathLike[str]) -> Path:
    """`norm_stats.json` inside a directory, or the path itself when it names a .json file."""
    path = Path(path_or_dir).expanduser()
    return path if path.suffix == ".json" else path / NORM_STATS_FILENAME


def load_norm_stats(path_or_dir: str | os.PathLike[str]) -> dict[str, NormStats]:
    """Read an openpi `norm_stats.json` (given directly or as the directory holding it)."""
    path = norm_stats_path(path_or_dir)
    if not path.is_file():
        raise FileNotFoundError(f"norm stats file not found at {path}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("norm_stats"), dict):
        raise ValueError(f"{path}: expected a top-level object with a 'norm_stats' object")
    return {str(key): _parse_entry(entry, f"norm_stats.{key}", path) for key, entry in document["norm_stats"].items()}


def _parse_entry(entry: Any, where: str, path: Path) -> NormStats:
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: {where} must be an object with mean and std")
    fields: dict[str, np.ndarray | None] = {}
    for name in ("mean", "std", "q01", "q99"):
        value = entry.get(name)
        if value is None:
            if name in ("mean", "std"):
                raise ValueError(f"{path}: {where}.{name} is missing")
            fields[name] = None
            continue
        fields[name] = _parse_vector(value, f"{where}.{name}", path)
    mean, std = fields["mean"], fields["std"]
    assert mean is not None and std is not None  # a missing one raised above
    try:
        return NormStats(mean=mean, std=std, q01=fields["q01"], q99=fields["q99"])
    except ValueError as exc:
        raise ValueError(f"{path}: {where}: {exc}") from exc


def _parse_vector(value: Any, where: str, path: Path) -> np.ndarray:
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{path}: {where} must be a list of numbers")
    if not value:
        raise ValueError(f"{path}: {where} is empty")
    if not all(math.isfinite(v) for v in value):
        raise ValueError(f"{path}: {where} holds a non-finite number")
    return np.asarray(value, dtype=np.float32)


def save_norm_stats(path_or_dir: str | os.PathLike[str], stats: Mapping[str, NormStats]) -> Path:
    """Write `stats` in openpi's format; a directory gets a `norm_stats.json` inside it. Returns the file."""
    for key, value in stats.items():
        if not isinstance(value, NormStats):
            raise TypeError(f"stats[{key!r}] must be NormStats, got {type(value).__name__}")
    path = norm_stats_path(path_or_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"norm_stats": {str(key): value.to_json_dict() for key, value in stats.items()}}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


class RunningStats:
    """Streams batches of vectors (all leading axes are batch) into mean, std, q01 and q99."""

    def __init__(self, num_quantile_bins: int = NUM_QUANTILE_BINS) -> None:
        if num_quantile_bins < 1:
            raise ValueError(f"num_quantile_bins must be positive, got {num_quantile_bins}")
        self._bins = num_quantile_bins
        self._count = 0
        self._mean = np.zeros(0)
        self._mean_sq = np.zeros(0)
        self._min = np.zeros(0)
        self._max = np.zeros(0)
        self._hist = np.zeros((0, num_quantile_bins))
        self._edges = np.zeros((0, num_quantile_bins + 1))

    @property
    def count(self) -> int:
        return self._count

    def update(self, batch: npt.ArrayLike) -> None:
        values = np.asarray(batch, dtype=np.float64)
        if values.ndim == 0:
            raise ValueError("batch must have at least one dimension")
        values = values.reshape(-1, values.shape[-1])
        if values.shape[0] == 0:
            return
        if not np.isfinite(values).all():
            raise ValueError("batch contains NaN or infinite values")
        if self._count == 0:
            self._start(values)
        elif values.shape[1] != self._mean.shape[0]:
            raise ValueError(f"batch has {values.shape[1]} dims, earlier batches had {self._mean.shape[0]}")
        else:
            self._widen(values.min(axis=0), values.max(axis=0))
        n = values.shape[0]
        self._count += n
        weight = n / self._count
        self._mean += (values.mean(axis=0) - self._mean) * weight
        self._mean_sq += ((values**2).mean(axis=0) - self._mean_sq) * weight
        for i in range(values.shape[1]):
            self._hist[i] += np.histogram(values[:, i], bins=self._edges[i])[0]

    def get_statistics(self) -> NormStats:
        if self._count < 2:
            raise ValueError(f"need at least 2 vectors to compute statistics, got {self._count}")
        std = np.sqrt(np.maximum(0.0, self._mean_sq - self._mean**2))
        return NormStats(mean=self._mean, std=std, q01=self._quantile(0.01), q99=self._quantile(0.99))

    def _start(self, values: np.ndarray) -> None:
        dim = values.shape[1]
        self._mean = np.zeros(dim)
        self._mean_sq = np.zeros(dim)
        self._min = values.min(axis=0)
        self._max = values.max(axis=0)
        self._hist = np.zeros((dim, self._bins))
        self._edges = self._make_edges()

    def _make_edges(self) -> np.ndarray:
        pad = _EDGE_PADDING * np.maximum(1.0, np.maximum(np.abs(self._min), np.abs(self._max)))
        return np.linspace(self._min - pad, self._max + pad, self._bins + 1, axis=-1)

    def _widen(self, batch_min: np.ndarray, batch_max: np.ndarray) -> None:
        if not ((batch_min < self._min).any() or (batch_max > self._max).any()):
            return
        self._min = np.minimum(self._min, batch_min)
        self._max = np.maximum(self._max, batch_max)
        old_edges, old_hist = self._edges, self._hist
        self._edges = self._make_edges()
        self._hist = np.stack(
            [
                np.histogram(old_edges[i, :-1], bins=self._edges[i], weights=old_hist[i])[0]
                for i in range(old_hist.shape[0])
            ]
        )

    def _quantile(self, q: float) -> np.ndarray:
        target = q * self._count
        cumulative = np.cumsum(self._hist, axis=1)
        index = np.array([np.searchsorted(row, target) for row in cumulative])
        return self._edges[np.arange(self._edges.shape[0]), index]
