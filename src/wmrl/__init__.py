"""wmrl: world-model RL lab bench.

Importing wmrl pins the CPU math libraries' kernels to AVX2 (`CPU_KERNELS`) before torch loads
them: oneDNN, MKL and ATen otherwise pick their kernels, and so their rounding, by the CPU's
instruction set, and a job's bytes would depend on the machine it ran on (a 20k-step DQN dataset
on one AVX-512 machine: 1,148 episodes as it is, 1,159 under an AVX2 cap). Any x86-64 CPU with
AVX2 then runs the same kernels. ``WMRL_CPU_KERNELS=native`` leaves the libraries their own
choice, and so does a machine without AVX2 (another architecture, or an x86-64 CPU without it,
where an AVX2 kernel would crash). What a job ran under is in its lineage (`cpu_kernels`).
"""

import logging
import os
import platform
import sys

CPU_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
               "MKL_CBWR": "AVX2"}
CHOICE = "WMRL_CPU_KERNELS"  # "avx2" (the default) or "native"


def has_avx2() -> bool:
    """An x86-64 CPU that lists avx2 among its flags (Linux's /proc/cpuinfo; elsewhere unknown: no)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(line.startswith("flags") and "avx2" in line.split() for line in cpuinfo)
    except OSError:
        return False


PINNED = os.environ.get(CHOICE, "avx2") != "native" and has_avx2()
if PINNED:
    if "torch" in sys.modules:
        logging.getLogger("wmrl").warning("torch was imported before wmrl: its CPU kernels may not be pinned to AVX2")
    os.environ.update(CPU_KERNELS)


def cpu_kernels() -> dict[str, str]:
    """The kernel settings this process runs under, as a job's lineage records them."""
    return {CHOICE: "avx2" if PINNED else "native", **{name: os.environ.get(name, "") for name in CPU_KERNELS}}
