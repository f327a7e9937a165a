"""Local LeRobot datasets, codebase v2.x and v3.0, read as frames with action chunks. Nothing is downloaded.

v2.x: `data/chunk-XXX/episode_XXXXXX.parquet` per episode, `meta/episodes.jsonl`, `meta/tasks.jsonl`, one mp4 per
camera per episode (`videos/chunk-XXX/<camera>/episode_XXXXXX.mp4`) or images inside the parquet.
v3.0: several episodes per `data/chunk-XXX/file-XXX.parquet`, `meta/episodes/chunk-XXX/file-XXX.parquet`,
`meta/tasks.parquet`, and per camera concatenated videos in which each episode starts at its
`videos/<camera>/from_timestamp`. Paths always come from `meta/info.json`'s templates.

All non-image columns are read into memory once (a few hundred bytes per frame); images are decoded per read.
Each frame carries the task and the subtask in words: the task comes from a per-frame column when the dataset
has one (`task_key`, or `overall_task` as in KeWangRobotics/libero_10_subtasks), else from the tasks table via
`task_index`; the subtask from the per-frame `subtask` column, or, when the dataset has none, is the task
itself (as in the released pi0.5 subtask fine-tunes trained on LIBERO without annotations).

Action chunks follow LeRobot's `delta_timestamps`: H actions from the frame on, the indices past the episode's
end clamped to its last frame and flagged in `action_is_pad`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import threading
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from policy.errors import UserFacingError
from training import locate
from training.video import VideoReader, decode_image

OVERALL_TASK_KEY = "overall_task"
_IMAGE_DTYPES = ("video", "image")


class DatasetError(UserFacingError, ValueError):
    """A dataset directory that does not hold what the reader or the config expects."""


@dataclasses.dataclass(frozen=True)
class Frame:
    images: dict[str, np.ndarray]  # dataset camera key → uint8 [H,W,3]
    state: np.ndarray  # float32 [S]
    actions: np.ndarray  # float32 [horizon, A]
    action_is_pad: np.ndarray  # bool [horizon]
    task: str
    subtask: str
    episode_index: int
    frame_index: int
    scene: str = ""  # where things are, from the `scene_key` column (training.locate); "" without one


@dataclasses.dataclass(frozen=True)
class Episode:
    index: int
    start: int  # first row in the frame table
    length: int
    videos: Mapping[str, tuple[pathlib.Path, float]]  # camera → (file, timestamp of the episode's frame 0 in it)


class LeRobotDataset:
    """Frames of one local dataset, addressed by row 0..len-1 in (episode, frame) order."""

    def __init__(
        self,
        root: str | pathlib.Path,
        action_horizon: int,
        *,
        state_key: str = "observation.state",
        action_key: str = "action",
        subtask_key: str = "subtask",
        task_key: str | None = None,
        scene_key: str | None = None,
        cameras: Sequence[str] | None = None,
        episodes: Sequence[int] | None = None,
    ):
        self.root = pathlib.Path(root).expanduser().resolve()
        if not (self.root / "meta" / "info.json").is_file():
            raise DatasetError(f"{self.root} is not a LeRobot dataset (no meta/info.json)")
        self.info = json.loads((self.root / "meta" / "info.json").read_text())
        self.version = str(self.info.get("codebase_version", ""))
        if not self.version.startswith(("v2", "v3")):
            raise DatasetError(f"{self.root}: codebase_version {self.version!r} is not supported (v2.x or v3.0)")
        self.action_horizon = action_horizon
        self.fps = float(self.info["fps"])
        features = self.info["features"]
        for key in (state_key, action_key):
            if key not in features:
                raise DatasetError(f"{self.root} has no feature {key!r}; it has {sorted(features)}")
        all_cameras = [k for k, f in features.items() if f.get("dtype") in _IMAGE_DTYPES]
        self.cameras = tuple(all_cameras if cameras is None else cameras)
        for camera in self.cameras:
            if camera not in all_cameras:
                raise DatasetError(f"{self.root} has no camera {camera!r}; it has {all_cameras}")
        self._features = features

        episode_meta = self._read_episode_meta()
        table = self._read_frames(
            episode_meta, [state_key, action_key, subtask_key, task_key, scene_key, OVERALL_TASK_KEY]
        )
        if episodes is not None:
            keep = pc.is_in(table["episode_index"], pa.array(list(episodes), pa.int64()))
            table = table.filter(keep)
        if table.num_rows == 0:
            raise DatasetError(f"{self.root} holds no frames" + (f" for episodes {list(episodes)}" if episodes else ""))
        self._state = _vectors(table[state_key])
        self._actions = _vectors(table[action_key])
        self._episode_index = table["episode_index"].to_numpy()
        self._frame_index = table["frame_index"].to_numpy()
        timestamps = table["timestamp"].to_numpy() if "timestamp" in table.column_names else None
        self._timestamp = self._frame_index / self.fps if timestamps is None else timestamps.astype(np.float64)
        self._task = self._frame_tasks(table, task_key, episode_meta)
        self._subtask = self._frame_subtasks(table, subtask_key)
        self._scene = np.full(len(self._task), "", object)
        if scene_key is not None:
            if scene_key not in table.column_names:
                raise DatasetError(
                    f"{self.root} has no per-frame column {scene_key!r} of where things are "
                    "for localisation co-training (the built-in recorder writes scene_locations with --locations; "
                    "or turn it off with --set data.locate_prob=0)"
                )
            self._scene = np.asarray(table[scene_key].to_pylist(), object)
        self._images_in_table = {c: table[c].combine_chunks() for c in self.cameras if features[c]["dtype"] == "image"}

        starts = np.flatnonzero(np.r_[True, self._episode_index[1:] != self._episode_index[:-1]])
        lengths = np.diff(np.r_[starts, len(self._episode_index)])
        indices = [int(self._episode_index[s]) for s in starts]
        self.episodes = [
            Episode(e, int(s), int(n), self._video_files(episode_meta, e))
            for e, s, n in zip(indices, starts, lengths, strict=True)
        ]
        self._episode_last_row = np.repeat(starts + lengths - 1, lengths)
        self._row_episode = np.repeat(np.arange(len(starts)), lengths)
        self._local = threading.local()
        self._readers: list[VideoReader] = []
        self._cached_frames: dict[str, np.ndarray] = {}

    # -- reading the tables ------------------------------------------------------------------------------------

    @property
    def is_v3(self) -> bool:
        return self.version.startswith("v3")

    def _read_episode_meta(self) -> dict[int, dict]:
        meta = self.root / "meta"
        if self.is_v3:
            files = sorted((meta / "episodes").glob("*/*.parquet"))
            if not files:
                raise DatasetError(f"{self.root} is v3.0 but has no meta/episodes/*/*.parquet")
            rows = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default").to_pylist()
        else:
            rows = _read_jsonl(meta / "episodes.jsonl")
        return {int(row["episode_index"]): row for row in rows}

    def _task_table(self) -> dict[int, str]:
        meta = self.root / "meta"
        if self.is_v3:
            path = meta / "tasks.parquet"
            if not path.is_file():
                return {}
            table = pq.read_table(path)
            text = [n for n in table.column_names if pa.types.is_string(table.schema.field(n).type)]
            if "task_index" not in table.column_names or not text:
                raise DatasetError(f"{path} needs a task_index column and a task string column")
            name = "task" if "task" in text else text[0]
            return dict(zip(table["task_index"].to_pylist(), table[name].to_pylist(), strict=True))
        path = meta / "tasks.jsonl"
        return {int(row["task_index"]): row["task"] for row in _read_jsonl(path)} if path.is_file() else {}

    def _data_files(self, episode_meta: Mapping[int, dict]) -> list[pathlib.Path]:
        template = self.info["data_path"]
        chunk = int(self.info.get("chunks_size", 1000))
        if self.is_v3:
            keys = sorted({(int(r["data/chunk_index"]), int(r["data/file_index"])) for r in episode_meta.values()})
            files = [template.format(chunk_index=c, file_index=f) for c, f in keys]
        else:
            files = [template.format(episode_chunk=e // chunk, episode_index=e) for e in sorted(episode_meta)]
        paths = [self.root / f for f in files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DatasetError(f"{self.root}: data file {missing[0]} is missing{more}")
        return paths

    def _read_frames(self, episode_meta: Mapping[int, dict], wanted: Sequence[str | None]) -> pa.Table:
        columns = {"episode_index", "frame_index", "timestamp", "task_index", *self.cameras}
        columns.update(k for k in wanted if k)
        tables = []
        for path in self._data_files(episode_meta):
            present = [c for c in pq.read_schema(path).names if c in columns]
            tables.append(pq.read_table(path, columns=present))
        table = pa.concat_tables(tables, promote_options="default")
        order = pc.sort_indices(table, sort_keys=[("episode_index", "ascending"), ("frame_index", "ascending")])
        return table.take(order)

    def _frame_tasks(self, table: pa.Table, task_key: str | None, episode_meta: Mapping[int, dict]) -> np.ndarray:
        if task_key is not None:
            if task_key not in table.column_names:
                raise DatasetError(f"{self.root} has no per-frame task column {task_key!r}")
            return np.asarray(table[task_key].to_pylist(), object)
        if OVERALL_TASK_KEY in table.column_names:
            return np.asarray(table[OVERALL_TASK_KEY].to_pylist(), object)
        tasks = self._task_table()
        if tasks and "task_index" in table.column_names:
            return np.asarray([tasks[int(i)] for i in table["task_index"].to_numpy()], object)
        first = {e: (row.get("tasks") or [""])[0] for e, row in episode_meta.items()}
        return np.asarray([first.get(int(e), "") for e in table["episode_index"].to_numpy()], object)

    def _frame_subtasks(self, table: pa.Table, subtask_key: str) -> np.ndarray:
        if subtask_key not in table.column_names:
            return self._task.copy()
        values = table[subtask_key].to_pylist()
        return np.asarray([s if s else t for s, t in zip(values, self._task, strict=True)], object)

    def _video_files(self, episode_meta: Mapping[int, dict], episode: int) -> dict[str, tuple[pathlib.Path, float]]:
        template = self.info.get("video_path")
        videos = {}
        for camera in self.cameras:
            if self._features[camera]["dtype"] != "video":
                continue
            if template is None:
                raise DatasetError(f"{self.root}: camera {camera!r} is a video but info.json has no video_path")
            if self.is_v3:
                row = episode_meta[episode]
                name = template.format(
                    video_key=camera,
                    chunk_index=int(row[f"videos/{camera}/chunk_index"]),
                    file_index=int(row[f"videos/{camera}/file_index"]),
                )
                videos[camera] = (self.root / name, float(row[f"videos/{camera}/from_timestamp"]))
            else:
                chunk = episode // int(self.info.get("chunks_size", 1000))
                name = template.format(episode_chunk=chunk, video_key=camera, episode_index=episode)
                videos[camera] = (self.root / name, 0.0)
        return videos

    # -- access ------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._episode_index)

    @property
    def state_dim(self) -> int:
        return int(self._state.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self._actions.shape[1])

    def texts(self) -> list[str]:
        """Every distinct task and subtask string, and the localisation questions and answers its scene
        column can give, sorted (to train a tokenizer that covers the dataset)."""
        scenes = sorted(set(self._scene.tolist()) - {""})
        answers = {where for scene in scenes for _, where in locate.scene_entries(scene)}
        return sorted(set(self._task.tolist()) | set(self._subtask.tolist()) | set(locate.questions(scenes)) | answers)

    def action_chunks(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actions [n,H,A] from each row on, and the pad flags [n,H] where the episode ended first."""
        rows = np.asarray(rows, np.int64)
        index = rows[:, None] + np.arange(self.action_horizon)
        last = self._episode_last_row[rows][:, None]
        return self._actions[np.minimum(index, last)], index > last

    def states(self, rows: np.ndarray) -> np.ndarray:
        return self._state[np.asarray(rows, np.int64)]

    def frame(self, row: int, *, with_images: bool = True) -> Frame:
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} is outside the dataset's {len(self)} frames")
        actions, pad = self.action_chunks(np.array([row]))
        images = {camera: self.image(row, camera) for camera in self.cameras} if with_images else {}
        return Frame(
            images=images,
            state=self._state[row],
            actions=actions[0],
            action_is_pad=pad[0],
            task=str(self._task[row]),
            subtask=str(self._subtask[row]),
            episode_index=int(self._episode_index[row]),
            frame_index=int(self._frame_index[row]),
            scene=str(self._scene[row]),
        )

    def video_sources(self) -> dict[str, list[tuple[str, int]]]:
        """Video camera → (file, frame index) of every row, in row order."""
        sources = {}
        for camera in self.cameras:
            if self._features[camera]["dtype"] != "video":
                continue
            fps = float(self._features[camera].get("info", {}).get("video.fps", self.fps))
            rows = []
            for episode in self.episodes:
                path, offset = episode.videos[camera]
                stamps = self._timestamp[episode.start : episode.start + episode.length]
                rows += [(str(path), round((offset + t) * fps)) for t in stamps]
            sources[camera] = rows
        return sources

    def use_frame_cache(self, *, progress: bool = True) -> None:
        """Read video frames from a decoded, memory-mapped copy (built on first use; see training.frame_cache)."""
        from training.frame_cache import open_frames

        self._cached_frames = open_frames(self.root, self.video_sources(), progress=progress)

    def image(self, row: int, camera: str) -> np.ndarray:
        cached = self._cached_frames.get(camera)
        if cached is not None:
            return np.array(cached[row])
        if camera in self._images_in_table:
            cell = self._images_in_table[camera][row].as_py()
            if isinstance(cell, dict):
                data = cell.get("bytes")
                if data is None and cell.get("path"):
                    data = (self.root / cell["path"]).read_bytes()
            else:
                data = cell
            if not data:
                raise DatasetError(f"{self.root}: frame {row} has no image for {camera!r}")
            return decode_image(data)
        path, offset = self.episodes[self._row_episode[row]].videos[camera]
        fps = float(self._features[camera].get("info", {}).get("video.fps", self.fps))
        return self._video_reader().frame(path, round((offset + self._timestamp[row]) * fps))

    def _video_reader(self) -> VideoReader:
        """One reader per thread: captures keep decoder state between reads."""
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = VideoReader()
            self._readers.append(reader)
        return reader

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
        self._readers.clear()
        self._local = threading.local()


def _vectors(column: pa.ChunkedArray) -> np.ndarray:
    """A fixed-length list (or scalar) column → float32 [N, D]."""
    array = column.combine_chunks()
    n = len(array)
    if pa.types.is_list(array.type) or pa.types.is_fixed_size_list(array.type) or pa.types.is_large_list(array.type):
        flat = pc.list_flatten(array).to_numpy(zero_copy_only=False)
        if n and flat.size % n:
            raise DatasetError(f"list column has rows of different lengths ({flat.size} values in {n} rows)")
        return flat.astype(np.float32).reshape(n, -1)
    return array.to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, 1)


def _read_jsonl(path: pathlib.Path) -> list[dict]:
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
