"""A `smoke` pipeline's chain through the SLURM profile on a real single-node SLURM cluster on
localhost (Debian's slurm-wlm and munge, brought up by hand), logging to a real `mlflow server`:
datasets, pretraining, a fine-tuning of ours, a d3rlpy peer, the online peer and their
evaluations (every training rule but the report's), whose outputs must be the bytes a local run
writes. Not the whole DAG: each SLURM job costs a status poll or more, and the whole smoke DAG
two at a time took most of this suite's time; 12 jobs exercise the same submission path.

Needs root and apt (to install the packages when absent): skipped otherwise, saying so. Every
wait is bounded; the daemons started here are stopped by their PIDs.
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, ROOT, free_port, snakemake_env, stop, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.server, pytest.mark.e2e]  # smoke_run, then SLURM runs it again

PACKAGES = ["slurm-wlm", "munge"]
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
# Slurm's own location: inside a job, srun finds its configuration only there (slurmstepd does
# not pass SLURM_CONF on). A configuration this test did not write is never touched.
CONF_DIR = Path("/etc/slurm")
MARK = "# written by wmrl's tests/test_slurm.py\n"
# Outputs that name their own MLflow runs, or time and measure the jobs: they differ between any
# two runs; everything else must be byte-identical.
RUN_SPECIFIC = ("model.mlflow.json", ".lineage.json", "report.html", "lineage.csv", "episodes.csv", "jobs.csv",
                "cost.csv", "training_speed.csv")

SLURM_CONF = MARK + """\
ClusterName=wmrltest
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
MpiDefault=none
GresTypes=gpu
# The profile asks for cluster-sized jobs (8 CPUs, 64 GB, a GPU): the node claims that much
# (config_overrides: slurmd believes this file, not the hardware), and `--jobs 2` keeps the
# work at what the machine has. Its two "GPUs" are /dev/null and /dev/zero (gres.conf: slurmd
# wants a device file per GPU); the smoke scale trains on the CPU.
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=32 RealMemory=262144 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def run(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


def install_slurm() -> None:
    """Install the packages unless they are there; refresh the package lists only if needed."""
    if shutil.which("slurmctld") and shutil.which("munged"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    if run(install, 600, env=env).returncode != 0:
        assert run(["apt-get", "update", "-qq"], 600, env=env).returncode == 0, "apt-get update failed"
        result = run(install, 600, env=env)
        assert result.returncode == 0, result.stderr[-2000:]


def munge_works() -> bool:
    return run(["munge", "-n"], 10).returncode == 0


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running single-node cluster."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("needs root and apt-get to install and start slurm-wlm and munge")
    install_slurm()
    conf = CONF_DIR / "slurm.conf"
    if conf.exists() and not conf.read_text().startswith(MARK):
        pytest.skip(f"{conf} holds another SLURM configuration, which this test does not overwrite")
    root = tmp_path_factory.mktemp("slurm")
    for directory in ("state", "spool"):
        (root / directory).mkdir()
    conf.write_text(SLURM_CONF.format(root=root, ctld_port=free_port(), slurmd_port=free_port()))
    (CONF_DIR / "gres.conf").write_text(MARK + "AutoDetect=off\nNodeName=localhost Name=gpu File=/dev/null,/dev/zero\n")
    daemons = []
    try:
        if not munge_works():  # a munged already running on this machine is used as it is
            MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
            shutil.chown(MUNGE_SOCKET.parent, "munge", "munge")
            daemons.append(subprocess.Popen(["runuser", "-u", "munge", "--", "munged", "--foreground", "--force"],
                                            start_new_session=True))
            wait_until(munge_works, "munged", 30, daemons[-1])
        for command in (["slurmctld", "-D"], ["slurmd", "-D", "-N", "localhost"]):
            with open(root / f"{command[0]}.out", "w") as out:
                daemons.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))

        def idle() -> bool:
            return run(["sinfo", "-h", "-o", "%T"], 10).stdout.split() == ["idle"]

        wait_until(idle, "the SLURM node (sinfo)", 60, daemons[-1])
        yield
    finally:
        for daemon in reversed(daemons):
            stop(daemon)
        for name in ("slurm.conf", "gres.conf"):
            (CONF_DIR / name).unlink(missing_ok=True)


EVALUATIONS = "results/smoke/minatar_transfer/evaluate/breakout/n1000"
TARGETS = [f"{EVALUATIONS}/pretrained/small-transformer-seed0.parquet", f"{EVALUATIONS}/d3rlpy_bc/d3rlpy-seed0.parquet",
           f"{EVALUATIONS}/dqn_online/sb3-seed0.parquet"]


@pytest.mark.timeout(3600)  # apt, the daemons, smoke_run when it runs first, and the chain (up to 1,800 s)
def test_a_smoke_chain_through_the_slurm_profile_writes_what_a_local_run_writes(slurm, mlflow_server,
                                                                                smoke_run, tmp_path):
    env = {**snakemake_env(), "MLFLOW_TRACKING_URI": mlflow_server,
           "WMRL_SLURM_PARTITION": "debug", "WMRL_SLURM_GPU_PARTITION": "debug"}
    command = [PYTHON, "-m", "snakemake", *TARGETS, "--snakefile", str(ROOT / "Snakefile"),
               "--workflow-profile", str(ROOT / "profiles" / "slurm"), "--config", "scale=smoke",
               "--slurm-status-command", "squeue",  # this cluster has no accounting: sacct never answers
               "--jobs", "2",  # the machine's cores
               "--retries", "0",  # a failure here is a failure, at once
               "--slurm-keep-successful-logs",  # one log per SLURM job: the record of what went through it
               # the local run's threads, so that the trained models can be compared byte for byte
               "--set-threads", "pretrain=2", "pretrain_single=2", "finetune=1", "train_online=1",
               "train_peer=1", "evaluate=1", "generate_dataset=1"]
    result = run(command, 1800, cwd=tmp_path, env=env)
    failed_jobs = [log for log in sorted((tmp_path / "logs").rglob("*.log")) if "Error" in log.read_text(errors="replace")]
    assert result.returncode == 0, "\n".join(
        [result.stderr[-3000:]] + [f"--- {log}:\n{log.read_text(errors='replace')[-2500:]}" for log in failed_jobs[:3]])
    assert "sbatch" in result.stderr or "SLURM" in result.stderr, "jobs did not go through SLURM"
    # every job of the DAG went through SLURM: counted from records that do not expire (squeue forgets
    # a finished job after MinJobAge, sooner than a slow machine's run ends): the executor's
    # announcements of the SLURM job ids and the job logs SLURM wrote
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", result.stderr)
    slurm_logs = sorted((tmp_path / ".snakemake" / "slurm_logs").rglob("*.log"))
    table = re.search(r"^total\s+(\d+)$", result.stderr, re.MULTILINE)  # Snakemake's table of jobs
    assert table, result.stderr[-3000:]
    planned = int(table.group(1))
    assert planned >= 10 and len(set(submitted)) == len(submitted) == len(slurm_logs) == planned, (
        planned, submitted, slurm_logs)

    slurm_files = outputs(tmp_path)
    assert set(TARGETS) <= slurm_files <= outputs(smoke_run)
    differ = [name for name in slurm_files if not name.endswith(RUN_SPECIFIC)
              and not filecmp.cmp(tmp_path / name, smoke_run / name, shallow=False)]
    assert differ == [], differ


def outputs(workdir: Path) -> set[str]:
    return {str(path.relative_to(workdir)) for top in ("data", "results") for path in (workdir / top).rglob("*")
            if path.is_file()}
