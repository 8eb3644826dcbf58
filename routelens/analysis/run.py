"""Running an analysis: the dataset cut into shards, each shard's statistics computed by an executor
(local, or Ray: analysis/ray_executor.py) and written as soon as it is done, then all merged.

Files in the output folder (docs/analysis.md):
- `analysis.json`: the settings, the dataset's fingerprint, the labels and whether it is complete;
- `shards/shard-<first prompt>.safetensors`: one shard's statistics, written atomically;
- `analysis.safetensors`: the merged statistics, once every shard is there;
- `prompts.jsonl`: the text and label of every prompt in a head's top list, so the folder is whole
  on its own (a server showing it reads no dataset file; it can move to another machine).
A killed run started again with the same settings skips the shards already written, so nothing is
counted twice; different settings in the same folder are refused. Memory holds one shard's
statistics at a time (the merge adds shard files one by one).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from safetensors.torch import load_file, save_file

from ..errors import InvalidArgumentError
from .collect import POSITIONS, shard_stats
from .dataset import Dataset
from .stats import Stats

FORMAT = "routelens.analysis/1"
META, MERGED, SHARDS, PROMPTS = "analysis.json", "analysis.safetensors", "shards", "prompts.jsonl"


@dataclass(frozen=True)
class Spec:
    """What an analysis computes: everything a worker needs to rebuild it anywhere."""

    model: str  # what rl.load takes (catalog name, hub id, folder)
    dataset: str
    text_field: str = "text"
    label_field: str = "label"
    positions: str = "last"
    threshold: float = 0.04
    norm: int = 1
    shard_size: int = 8
    dtype: str | None = None
    device: str | None = None

    def check(self) -> None:
        if self.positions not in POSITIONS:
            raise InvalidArgumentError(f"positions must be 'last' or 'all', not {self.positions!r}")
        if not isinstance(self.threshold, (int, float)) or not 0.0 < float(self.threshold) <= 1.0:
            raise InvalidArgumentError(f"threshold must be above 0 and at most 1, not {self.threshold!r} "
                                       "(0 would put every component on every route)")
        if not isinstance(self.shard_size, int) or not 1 <= self.shard_size <= 10_000:
            raise InvalidArgumentError(f"shard size must be 1..10000 prompts, not {self.shard_size!r}")


def shards(n_prompts: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n_prompts)) for start in range(0, n_prompts, size)]


class Output:
    """The output folder: its metadata, the shards written so far, atomic writes."""

    def __init__(self, folder: str | Path, spec: Spec, dataset: Dataset) -> None:
        self.folder = Path(folder).expanduser()
        self.spec, self.dataset = spec, dataset
        self.meta = {"format": FORMAT, "spec": asdict(spec), "fingerprint": dataset.fingerprint(),
                     "n_prompts": len(dataset), "complete": False}
        old = self.read_meta()
        if old is not None and (old.get("spec") != self.meta["spec"] or old.get("fingerprint") != self.meta["fingerprint"]):
            raise InvalidArgumentError(
                f"{str(self.folder)!r} holds an analysis with other settings or another dataset; give another --out "
                "folder, or remove that one to start again")
        (self.folder / SHARDS).mkdir(parents=True, exist_ok=True)
        if old is None:
            self.write_json(META, self.meta)

    def read_meta(self) -> dict[str, Any] | None:
        path = self.folder / META
        return json.loads(path.read_text()) if path.exists() else None

    def shard_path(self, start: int) -> Path:
        return self.folder / SHARDS / f"shard-{start:09d}.safetensors"

    def done(self, start: int) -> bool:
        return self.shard_path(start).exists()

    def write_shard(self, start: int, stats: Stats) -> None:
        self._save(self.shard_path(start), stats)

    def shard_files(self) -> Iterator[tuple[Path, Stats]]:
        for path in sorted((self.folder / SHARDS).glob("shard-*.safetensors")):
            yield path, read_stats(path)

    def _save(self, path: Path, stats: Stats) -> None:
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        save_file(stats.tensors(), str(tmp), metadata={"stats": json.dumps(stats.to_meta())})
        os.replace(tmp, path)  # a killed run leaves no half-written shard under the real name

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        tmp = self.folder / f"{name}.tmp{os.getpid()}"
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False))
        os.replace(tmp, self.folder / name)

    def merge(self) -> Stats:
        """Every shard added together (one in memory at a time), written as the merged file."""
        total: Stats | None = None
        for _path, stats in self.shard_files():
            if total is None:
                total = stats
            else:
                total.add(stats)
        if total is None:
            raise InvalidArgumentError("no shard was computed: the dataset is empty")
        self._save(self.folder / MERGED, total)
        self.write_prompts(total)
        self.write_json(META, {**self.meta, "complete": True, **total.to_meta()})
        return total

    def write_prompts(self, stats: Stats) -> None:
        """The prompts the top lists name (at most layers x heads x TOP_PROMPTS), as JSONL."""
        wanted = sorted({row[1] for rows in stats.top.values() for row in rows})
        lines = []
        for index in wanted:
            prompt = next(self.dataset.prompts(index, index + 1))
            lines.append(json.dumps({"prompt": index, "text": prompt.text, "label": prompt.label}, ensure_ascii=False))
        tmp = self.folder / f"{PROMPTS}.tmp{os.getpid()}"
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, self.folder / PROMPTS)


def read_stats(path: Path) -> Stats:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["stats"])
    return Stats.from_tensors(load_file(str(path)), meta["labels"])


def analyze(spec: Spec, out: str | Path, *, executor: str = "local", model: Any = None,
            ray_address: str | None = None, workers: int | None = None, progress: bool = True) -> Stats:
    """Run (or resume) the analysis `spec` into the folder `out`; the merged statistics.

    executor "local" runs the shards here, on `model` (a loaded routelens Model) or on
    rl.load(spec.model); "ray" hands them to Ray workers, each loading the model once
    (analysis/ray_executor.py; `ray_address` "auto" joins a running cluster, None starts Ray here).
    Shards already in `out` from an earlier run with the same settings are skipped."""
    spec.check()
    dataset = Dataset(spec.dataset, text_field=spec.text_field, label_field=spec.label_field)
    output = Output(out, spec, dataset)
    todo = [s for s in shards(len(dataset), spec.shard_size) if not output.done(s[0])]
    bar = _progress(len(dataset), len(dataset) - sum(b - a for a, b in todo), progress)
    try:
        if executor == "local":
            if model is None:
                from ..models.loading import load

                model = load(spec.model, dtype=spec.dtype, device=spec.device)
            for start, stop in todo:
                output.write_shard(start, shard_stats(model, dataset, spec, start, stop, on_prompt=lambda: bar.update(1)))
        elif executor == "ray":
            from .ray_executor import run_on_ray

            run_on_ray(spec, todo, output.write_shard, address=ray_address, workers=workers,
                       on_shard=lambda n: bar.update(n))
        else:
            raise InvalidArgumentError(f"executor must be 'local' or 'ray', not {executor!r}")
    finally:
        bar.close()
    return output.merge()


def _progress(total: int, done: int, show: bool) -> Any:
    """Prompts done, rate and time left (tqdm), starting from what an earlier run finished."""
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="prompt", disable=not show, desc="analyzing",
                smoothing=0.1, mininterval=0.5)

