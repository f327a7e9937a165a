"""Rewrites a recorded LeRobot v2.1 dataset into the other layouts the reader must handle.

- v3.0: two episodes per data file, per-camera videos concatenated across episodes (episode k starts at the
  sum of the earlier lengths / fps), `meta/episodes/` and `meta/tasks.parquet` (task strings in the pandas
  index column, as LeRobot writes them), and a per-frame `overall_task` column;
- v2.1 with the cameras as PNG bytes inside the parquet (LeRobot's `image` features);

and writes `cot_simple.json` reasoning annotations for a recording (`write_cot`).

Works from the raw files (pyarrow, OpenCV), not through the reader under test.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def _episodes(src: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (src / "meta" / "episodes.jsonl").read_text().splitlines() if line]


def _video_frames(path: pathlib.Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def _cameras(info: dict) -> list[str]:
    return [k for k, f in info["features"].items() if f["dtype"] == "video"]


def write_v3(src: pathlib.Path, dst: pathlib.Path, episodes_per_file: int = 2) -> pathlib.Path:
    info = json.loads((src / "meta" / "info.json").read_text())
    episodes = _episodes(src)
    cameras = _cameras(info)
    fps = float(info["fps"])
    tasks = [json.loads(line) for line in (src / "meta" / "tasks.jsonl").read_text().splitlines() if line]
    task_text = {t["task_index"]: t["task"] for t in tasks}
    (dst / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    rows = []
    writers = {}
    video_offset = {cam: 0 for cam in cameras}
    for file_index in range(0, len(episodes), episodes_per_file):
        group = episodes[file_index : file_index + episodes_per_file]
        tables = []
        for ep in group:
            e = ep["episode_index"]
            table = pq.read_table(src / info["data_path"].format(episode_chunk=0, episode_index=e))
            overall = [task_text[i] for i in table["task_index"].to_pylist()]
            tables.append(table.append_column("overall_task", pa.array(overall, pa.string())))
            row = {
                "episode_index": e,
                "tasks": ep["tasks"],
                "length": ep["length"],
                "data/chunk_index": 0,
                "data/file_index": file_index // episodes_per_file,
                "dataset_from_index": int(table["index"][0].as_py()),
                "dataset_to_index": int(table["index"][-1].as_py()) + 1,
            }
            for cam in cameras:
                frames = _video_frames(src / info["video_path"].format(episode_chunk=0, video_key=cam, episode_index=e))
                if cam not in writers:
                    out = dst / "videos" / cam / "chunk-000" / "file-000.mp4"
                    out.parent.mkdir(parents=True)
                    h, w = frames[0].shape[:2]
                    writers[cam] = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                for frame in frames:
                    writers[cam].write(frame)
                row[f"videos/{cam}/chunk_index"] = 0
                row[f"videos/{cam}/file_index"] = 0
                row[f"videos/{cam}/from_timestamp"] = video_offset[cam] / fps
                row[f"videos/{cam}/to_timestamp"] = (video_offset[cam] + len(frames)) / fps
                video_offset[cam] += len(frames)
            rows.append(row)
        out = dst / "data" / "chunk-000" / f"file-{file_index // episodes_per_file:03d}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        combined = pa.concat_tables(tables)
        pq.write_table(combined.take(np.random.default_rng(0).permutation(combined.num_rows)), out)
    for writer in writers.values():
        writer.release()
    pq.write_table(pa.Table.from_pylist(rows), dst / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    pq.write_table(
        pa.table(
            {
                "task_index": [t["task_index"] for t in tasks],
                "__index_level_0__": [f"unused {t['task']}" for t in tasks],
            }
        ),
        dst / "meta" / "tasks.parquet",
    )
    info.update(
        codebase_version="v3.0",
        data_path="data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        video_path="videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
    )
    info["features"]["overall_task"] = {"dtype": "string", "shape": [1], "names": None}
    (dst / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    return dst


def write_v21_images(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    info = json.loads((src / "meta" / "info.json").read_text())
    cameras = _cameras(info)
    shutil.copytree(src / "meta", dst / "meta")
    for ep in _episodes(src):
        e = ep["episode_index"]
        name = info["data_path"].format(episode_chunk=0, episode_index=e)
        table = pq.read_table(src / name)
        for cam in cameras:
            frames = _video_frames(src / info["video_path"].format(episode_chunk=0, video_key=cam, episode_index=e))
            cells = [{"bytes": cv2.imencode(".png", f)[1].tobytes(), "path": None} for f in frames]
            image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
            table = table.append_column(cam, pa.array(cells, image_type))
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, dst / name)
    for cam in cameras:
        info["features"][cam]["dtype"] = "image"
    info.pop("video_path")
    (dst / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    return dst


def write_cot(dataset, path) -> dict:
    """cot_simple.json for a recording: one segment per subtask, reasoning = what the subtask says to do."""
    document = {}
    for episode in dataset.episodes:
        frames = [dataset.frame(r, with_images=False) for r in range(episode.start, episode.start + episode.length)]
        segments, previous = [], f"Instruction: {frames[0].task}"
        for i, frame in enumerate(frames):
            if i == 0 or frame.subtask != frames[i - 1].subtask:
                if segments:
                    segments[-1]["end_step"] = i - 1
                reasoning = f"Next I {frame.subtask}"
                segments.append({"content": previous, "start_step": i, "end_step": i, "updated_content": reasoning})
                previous = reasoning
        segments[-1]["end_step"] = len(frames) - 1
        document[str(episode.index)] = {"segments": segments}
    path.write_text(json.dumps(document))
    return document
