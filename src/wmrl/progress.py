"""Progress of long work: a tqdm bar on a terminal, periodic log lines (rate, ETA) in log files."""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger("wmrl")


def interactive() -> bool:
    """Whether the console is a terminal (bars) rather than a log file (periodic lines)."""
    return sys.stderr.isatty()


class Progress:
    def __init__(self, total: int, desc: str, unit: str = "steps", interval_s: float = 10.0):
        self.total, self.desc, self.unit, self.interval_s = total, desc, unit, interval_s
        self.start = self.last_log = time.perf_counter()
        self.done = self.logged = 0
        self.bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True) if interactive() else None

    def update(self, done: int) -> None:
        """Report that `done` units of `total` are finished."""
        if self.bar is not None:
            self.bar.update(done - self.done)
        self.done = done
        now = time.perf_counter()
        due = now - self.last_log >= self.interval_s or done >= self.total
        if self.bar is None and due and done != self.logged:
            self.last_log, self.logged = now, done
            self._log_line(now)

    def _log_line(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        log.info("%s: %s/%s %s (%.0f%%), %.0f %s/s, ETA %.0fs", self.desc, f"{self.done:,}", f"{self.total:,}",
                 self.unit, 100 * self.done / max(self.total, 1), rate, self.unit, eta)

    def close(self) -> float:
        """Finish; return the elapsed seconds."""
        if self.bar is not None:
            self.bar.close()
        return time.perf_counter() - self.start
