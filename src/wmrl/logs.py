"""Logging for jobs and the command line: one format, to stderr or to a job's log file."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(message)s"


def setup(stream=sys.stderr) -> None:
    logging.basicConfig(level=logging.INFO, stream=stream, format=FORMAT, force=True)


@contextlib.contextmanager
def job_logging(path: str | Path) -> Iterator[None]:
    """Log to `path` for the duration of a job; a failure's traceback goes there too."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        setup(handle)
        try:
            yield
        except BaseException:
            handle.write(traceback.format_exc())
            raise
