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
    """Send a job's logging, prints and warnings to `path`; a failure's traceback goes there too."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as handle, contextlib.redirect_stdout(handle), \
            contextlib.redirect_stderr(handle):
        setup(handle)
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            for handler in logging.getLogger(name).handlers:  # Lightning adds its own console handlers
                if isinstance(handler, logging.StreamHandler):
                    handler.setStream(handle)
        try:
            yield
        except BaseException:
            handle.write(traceback.format_exc())
            raise
