"""Files a job writes and reads: a failed write (a full disk) raises one error naming the file, a
checkpoint, file or directory is published whole or not at all, a checkpoint that cannot be read says
which file and what to do, and a work directory holds the resumable state of one job spec only."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("wmrl")


# a training job's resume checkpoints under work/<run>/checkpoints/, newest first (wmrl.train.loop)
RESUMABLE = ("last.ckpt", "previous.ckpt")


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be read (truncated, corrupted, not a checkpoint)."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path} is not a readable checkpoint ({reason}): delete it and rerun the job that wrote it")
        self.path, self.reason = Path(path), reason


def write_bytes(path: Path | str, data: bytes | memoryview, what: str) -> None:
    """Write `data` to `path`; an OSError (ENOSPC, EFBIG) is raised again naming `what` and the file."""
    try:
        Path(path).write_bytes(data)
    except OSError as error:
        raise write_error(error, what, path) from error


def write_error(error: OSError, what: str, path: Path | str) -> OSError:
    """`error` of writing `what` to `path`, as one line that names them and says what to do."""
    return OSError(error.errno, f"could not write {what} {path} ({error.strerror}): free disk space and rerun the job")


def publish(path: Path | str, write: Callable[[str], Any]) -> None:
    """`write` the file under a ``.partial`` name beside `path`, then rename it: a file that exists
    is whole (a killed job leaves only the ``.partial`` one, which the rerun overwrites)."""
    partial = f"{path}.partial"
    write(partial)
    os.replace(partial, path)


@contextlib.contextmanager
def publish_dir(out: Path | str) -> Iterator[Path]:
    """Yield the path ``<out>.partial`` for the body to write a directory at (a stale one, and a
    stale `out`, removed first), then rename it to `out`: a directory that exists is whole (a failed
    or killed job leaves only the ``.partial`` one, which the rerun removes)."""
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    for stale in (partial, out):
        if stale.exists():
            shutil.rmtree(stale)
    yield partial
    os.replace(partial, out)


def save_checkpoint(state: dict[str, Any], path: Path | str) -> None:
    """`torch.save` `state` to `path` through a temporary name beside it, renamed once written: a
    failed write leaves the previous file (or none), never a half-written one."""
    import torch

    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    partial = path.with_name(f"{path.name}.partial")
    try:
        partial.write_bytes(buffer.getbuffer())
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise write_error(error, "checkpoint", path) from error
    os.replace(partial, path)


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """A weights-only checkpoint, on the CPU; one that cannot be read raises CheckpointError naming it."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(path, reason) from error


def claim_work_dir(work_dir: Path, spec: dict[str, Any]) -> bool:
    """Make `work_dir` the resumable state of exactly this `spec`: state left by a job with other
    settings is wiped (it must not be resumed). Returns whether a checkpoint to resume is there."""
    stamp = work_dir / "spec.json"
    text = json.dumps(spec, sort_keys=True, default=str)
    if work_dir.exists() and (not stamp.is_file() or stamp.read_text() != text):
        log.info("discarding %s: it holds the state of a job with other settings", work_dir)
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(text)
    return any((work_dir / "checkpoints" / name).is_file() for name in RESUMABLE)
