"""A real one-node SLURM for the tests, installed with apt-get when missing and run as root.

slurmctld and slurmd run in the foreground as children of the test process, with every state, spool,
log and pid path under a temporary directory and ports picked free at start, so a run never collides
with a daemon that an earlier, killed run left behind. The node offers two GPUs as GRES backed by
empty files: SLURM schedules them like real ones (a job that asks for one gets SLURM_GPUS=1 and
its request shows in `scontrol show job`), while torch inside the job finds no CUDA device and
trains on the CPU.
Accounting is off (no slurmdbd), so sacct knows nothing: job status comes from squeue, and
MinJobAge keeps finished jobs visible to squeue and scontrol for the length of a test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel", "munge")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_PIDFILE = Path("/run/munge/munged.pid")
# Where SLURM's clients look when SLURM_CONF is not set. The slurm-jobstep executor strips SLURM_*
# variables (SLURM_CONF among them) before its `srun` inside a job, so that srun must find the
# config here, as it does on a real cluster.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
CLUSTER_NAME = "grokking-test"
PARTITION = "main"


def _missing() -> list[str]:
    return [p for p in DAEMONS if not os.access(p, os.X_OK)] + [
        c for c in CLIENTS if shutil.which(c) is None
    ]


def ensure_installed() -> str | None:
    """Install SLURM and munge when missing; return why they cannot be had, or None."""
    if not _missing():
        return None
    if os.geteuid() != 0:
        return f"SLURM is not installed ({', '.join(_missing())} missing) and installing needs root"
    if shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    # A fresh machine has no package lists yet: install, and on failure update and try once more.
    why = ""
    for commands in ([install], [["apt-get", "update", "-q"], install]):
        for command in commands:
            try:
                proc = subprocess.run(command, env=env, capture_output=True, text=True,
                                      timeout=900)
            except subprocess.TimeoutExpired:
                why = f"{' '.join(command)} timed out"
                break
            if proc.returncode != 0:
                why = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
                break
        else:
            if not _missing():
                return None
            why = f"still missing after the install: {', '.join(_missing())}"
    return f"could not install {' '.join(PACKAGES)} with apt-get: {why}"


class ClusterUnavailable(RuntimeError):
    """This machine cannot host the test cluster (a reason to skip, not a failure)."""


def _is_ours(conf: Path) -> bool:
    """A (possibly dangling) config link that one of these test clusters wrote."""
    try:
        return f"ClusterName={CLUSTER_NAME}" in conf.read_text()
    except OSError:
        return True  # dangling: its temporary directory is gone, so it was a test cluster's link


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _munge_works() -> bool:
    """A credential that munge encodes and decodes: the test that SLURM's authentication runs."""
    try:
        token = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        if token.returncode != 0:
            return False
        check = subprocess.run(["unmunge"], input=token.stdout, capture_output=True, timeout=10)
        return check.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {seconds:.0f} s waiting for {what}")


@dataclass
class SlurmCluster:
    """One controller and one node on this machine; ``env`` points SLURM's clients at it."""

    root: Path
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    partition: str = PARTITION
    daemons: list[subprocess.Popen] = field(default_factory=list)
    munged_pid: int | None = None  # set only when this cluster started munged

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def run(self, *command: str, check: bool = True) -> str:
        proc = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {proc.stdout}{proc.stderr}")
        return proc.stdout

    # -- start ------------------------------------------------------------------------------
    def start(self) -> None:
        if os.geteuid() != 0:
            raise ClusterUnavailable("starting slurmd and slurmctld (SlurmUser=root) needs root")
        try:
            self._start_munge()
            self._write_config()
            self._link_system_conf()
            for daemon in ("slurmctld", "slurmd"):
                with open(self.root / "log" / f"{daemon}.out", "w") as out:
                    self.daemons.append(subprocess.Popen(
                        [f"/usr/sbin/{daemon}", "-D", "-f", str(self.conf)],  # -D: foreground
                        env=self.env, stdout=out, stderr=subprocess.STDOUT,
                        start_new_session=True,  # a Ctrl-C of the tests reaches them via stop()
                    ))
            _wait_for(self._node_idle, 90, f"node {self.host} to become idle ({self.logs()})")
        except BaseException:
            self.stop()
            raise

    def _start_munge(self) -> None:
        if _munge_works():
            return  # a munged is already running (this machine's own, or another test's): share it
        if not MUNGE_KEY.exists():
            subprocess.run(["mungekey", "--create", "--keyfile", str(MUNGE_KEY)], check=True)
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o400)
        MUNGE_PIDFILE.parent.mkdir(parents=True, exist_ok=True)
        shutil.chown(MUNGE_PIDFILE.parent, "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True,
                       timeout=30)
        _wait_for(_munge_works, 30, "munged")
        self.munged_pid = int(MUNGE_PIDFILE.read_text().split()[0])

    def _write_config(self) -> None:
        for sub in ("etc", "state", "spool", "log", "run", "gpu"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # Two "GPUs": device files that SLURM hands out like /dev/nvidia0 and /dev/nvidia1.
        for index in range(2):
            (self.root / "gpu" / f"fakegpu{index}").touch()
        hardware = subprocess.run(["/usr/sbin/slurmd", "-C"], capture_output=True, text=True,
                                  check=True).stdout.splitlines()[0]
        hardware = re.sub(r"^NodeName=\S+", f"NodeName={self.host}", hardware)
        r = self.root
        self.conf.write_text(f"""\
ClusterName={CLUSTER_NAME}
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# Finished jobs stay in the controller for an hour: squeue reports their end state and the tests
# read their requests back with scontrol (there is no accounting database to ask).
MinJobAge=3600
GresTypes=gpu
{hardware} NodeAddr=127.0.0.1 Gres=gpu:2 State=UNKNOWN
PartitionName={self.partition} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")
        (self.root / "etc" / "gres.conf").write_text(
            f"NodeName={self.host} Name=gpu File={r}/gpu/fakegpu[0-1]\n"
        )

    def _link_system_conf(self) -> None:
        if SYSTEM_CONF.is_symlink() and _is_ours(SYSTEM_CONF):
            SYSTEM_CONF.unlink()  # left behind by an earlier run that was killed
        if SYSTEM_CONF.exists():
            raise ClusterUnavailable(
                f"{SYSTEM_CONF} belongs to another SLURM; this test brings its own cluster"
            )
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)

    def _node_idle(self) -> bool:
        for daemon in self.daemons:
            if daemon.poll() is not None:
                raise RuntimeError(
                    f"{daemon.args[0]} exited with {daemon.returncode}: {self.logs()}"
                )
        out = self.run("sinfo", "-h", "-N", "-o", "%T", "-n", self.host, check=False)
        return out.strip().rstrip("*") == "idle"

    def logs(self) -> str:
        tails = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"):
            path = self.root / "log" / name
            if path.exists():
                tails.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-15:]))
        return "\n".join(tails)

    # -- inspect ----------------------------------------------------------------------------
    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller remembers (finished ones too, for MinJobAge), as key=value."""
        out = self.run("scontrol", "show", "job", "--oneliner", check=False)
        jobs = []
        for line in out.splitlines():
            if line.startswith("JobId="):
                # No value has spaces here (paths lie under pytest's temporary directory).
                jobs.append(dict(re.findall(r"(\w+)=(\S*)", line)))
        return jobs

    # -- stop -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel what is left, then stop the daemons this cluster started, by their pids."""
        if any(d.poll() is None for d in self.daemons):
            self.run("scancel", "--partition", self.partition, check=False)
        for daemon in reversed(self.daemons):  # slurmd first, then the controller
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait(timeout=10)
        self.daemons.clear()
        if SYSTEM_CONF.is_symlink() and SYSTEM_CONF.resolve() == self.conf.resolve():
            SYSTEM_CONF.unlink()
        if self.munged_pid is not None:
            try:
                os.kill(self.munged_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass  # already gone
            self.munged_pid = None
