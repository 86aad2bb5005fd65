"""Recovery after a killed controller: stale Snakemake locks and forkserver temp dirs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from elasticity import recovery

HOLD_FLOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


@pytest.fixture
def unclaimed(monkeypatch):
    """This test process as one that has not claimed a controller lock yet."""
    monkeypatch.setattr(recovery, "_controller_fd", None)
    yield
    if recovery._controller_fd is not None:
        os.close(recovery._controller_fd)


def _stale_locks(workdir: Path) -> list[Path]:
    locks = workdir / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    paths = [locks / "0.input.lock", locks / "0.output.lock"]
    for path in paths:
        path.write_text(f"{workdir}/out.txt\n")
    return paths


def test_stale_locks_are_removed_and_named(tmp_path, unclaimed):
    paths = _stale_locks(tmp_path)
    other = tmp_path / ".snakemake" / "locks" / "notes.txt"
    other.write_text("not a Snakemake lock")

    message = recovery.claim_controller(tmp_path)

    assert message is not None and "stale" in message
    for path in paths:
        assert not path.exists()
        assert str(path) in message
    assert other.exists()


def test_nothing_stale_gives_no_message(tmp_path, unclaimed):
    assert recovery.claim_controller(tmp_path) is None
    assert (tmp_path / ".snakemake" / recovery.CONTROLLER_LOCK).exists()


def test_a_second_claim_leaves_the_runs_own_locks(tmp_path, unclaimed):
    assert recovery.claim_controller(tmp_path) is None
    own = _stale_locks(tmp_path)  # written by Snakemake after the claim: this run's own
    assert recovery.claim_controller(tmp_path) is None
    assert all(path.exists() for path in own)


def test_locks_of_a_running_controller_are_left(tmp_path, unclaimed):
    paths = _stale_locks(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_FLOCK, str(tmp_path / ".snakemake" / recovery.CONTROLLER_LOCK)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert recovery.claim_controller(tmp_path) is None
        assert all(path.exists() for path in paths)
    finally:
        holder.kill()
        holder.wait()
    # Once the holder is gone the locks are stale, and a later claim removes them.
    assert recovery.claim_controller(tmp_path) is not None
    assert not any(path.exists() for path in paths)


def _try_flock(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
         "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", str(path)],
        capture_output=True, text=True)


def test_the_lock_lasts_as_long_as_the_process_not_its_children(tmp_path, unclaimed):
    recovery.claim_controller(tmp_path)
    lock = tmp_path / ".snakemake" / recovery.CONTROLLER_LOCK
    assert "BlockingIOError" in _try_flock(lock).stderr
    assert not os.get_inheritable(recovery._controller_fd)  # closed on exec
    # A forked child (a job) lives on while its parent lets go of the lock, as a job of a
    # killed controller does; the lock must be free then.
    release_child, child_waits = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(child_waits)
        os.read(release_child, 1)
        os._exit(0)
    os.close(release_child)
    try:
        os.close(recovery._controller_fd)
        recovery._controller_fd = None
        free = _try_flock(lock)
        assert free.returncode == 0, free.stderr
    finally:
        os.close(child_waits)
        os.waitpid(pid, 0)


@pytest.fixture
def short_tmp():
    """A temp dir with a short path: the forkserver's socket path must fit in 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="rec-"))
    yield path
    shutil.rmtree(path)


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_sweep_removes_only_dead_controllers_dirs(short_tmp):
    dead = Path(tempfile.mkdtemp(prefix=f"elasticity-{_dead_pid()}-", dir=short_tmp))
    (dead / "pymp-abcdefgh").mkdir()
    live = Path(tempfile.mkdtemp(prefix=f"elasticity-{os.getpid()}-", dir=short_tmp))
    unrelated = [short_tmp / "pymp-abcdefgh", short_tmp / "elasticity-data",
                 short_tmp / f"elasticity-{_dead_pid()}"]
    for path in unrelated:
        path.mkdir()
    not_a_dir = short_tmp / f"elasticity-{_dead_pid()}-abcdefgh"
    not_a_dir.write_text("")

    assert recovery.sweep_stale_tempdirs(short_tmp) == [dead]

    assert not dead.exists()
    assert all(path.exists() for path in [live, *unrelated, not_a_dir])


FORKSERVER = """
import multiprocessing, os, signal, sys
from concurrent.futures import ProcessPoolExecutor
from elasticity import recovery

private = recovery.private_mp_tempdir()
assert recovery.private_mp_tempdir() == private
with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver")) as pool:
    assert pool.submit(os.getpid).result() != os.getpid()
    sockets = [str(p.relative_to(private)) for p in private.glob("pymp-*/listener-*")]
print(private, *sockets, flush=True)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _forkserver_run(tmpdir: Path, ending: str) -> tuple[subprocess.CompletedProcess, Path]:
    done = subprocess.run([sys.executable, "-c", FORKSERVER, ending], capture_output=True,
                          text=True, env={**os.environ, "TMPDIR": str(tmpdir)}, timeout=120)
    private, *sockets = done.stdout.split()
    assert len(sockets) == 1, done.stderr  # the forkserver's socket is in the private dir
    return done, Path(private)


def test_forkserver_socket_is_in_a_private_dir_removed_at_exit(short_tmp):
    done, private = _forkserver_run(short_tmp, "exit")
    assert done.returncode == 0, done.stderr
    assert private.parent == short_tmp and recovery.TEMPDIR.fullmatch(private.name)
    assert done.stderr == ""  # no complaint from multiprocessing's own cleanup
    assert list(short_tmp.iterdir()) == []


def test_a_killed_controllers_dir_is_swept_by_the_next(short_tmp):
    done, private = _forkserver_run(short_tmp, "kill")
    assert done.returncode == -signal.SIGKILL
    assert private.exists()
    # The next controller (this test process) sweeps it when it makes its own dir.
    assert recovery.sweep_stale_tempdirs(short_tmp) == [private]


def test_a_temp_dir_too_deep_for_the_socket_keeps_multiprocessings_own(short_tmp):
    deep = short_tmp / ("d" * (60 - len(str(short_tmp))))
    deep.mkdir()
    code = ("import multiprocessing.util as u; from elasticity import recovery; "
            "print(recovery.private_mp_tempdir(), u.get_temp_dir())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TMPDIR": str(deep)}, check=True)
    private, mp_dir = done.stdout.split()
    assert private == "None"
    assert Path(mp_dir).parent == deep and Path(mp_dir).name.startswith("pymp-")


SNAKEFILE = """
rule slow:
    output: "done.txt"
    shell: "sleep ${{SLEEP:-30}} && touch {output}"
"""
CLAIM = """
import sys
from elasticity.recovery import claim_controller

if workflow.is_main_process and (message := claim_controller()):
    print(message, file=sys.stderr)
"""


def _snakemake(workdir: Path, sleep: int, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--rerun-incomplete"],
        cwd=workdir, env={**os.environ, "SLEEP": str(sleep)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, **popen)


def _kill_during_a_job(workdir: Path) -> None:
    """Start the slow run and `kill -9` its controller once Snakemake has locked the dir."""
    controller = _snakemake(workdir, 30, start_new_session=True)
    try:
        locks = workdir / ".snakemake" / "locks"
        deadline = time.monotonic() + 120
        while not any(locks.glob("*.lock")):
            assert controller.poll() is None, controller.stdout.read()
            assert time.monotonic() < deadline, "Snakemake never locked the directory"
            time.sleep(0.1)
        controller.kill()
        controller.wait()
    finally:
        # The orphaned `sleep` of the killed job: in the controller's process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(controller.pid, signal.SIGKILL)
        controller.stdout.close()


def _rerun(workdir: Path) -> tuple[int, str]:
    rerun = _snakemake(workdir, 0)
    output, _ = rerun.communicate(timeout=120)
    return rerun.returncode, output


@pytest.mark.workflow
def test_the_same_command_runs_again_after_the_controller_is_killed(tmp_path):
    plain, claiming = tmp_path / "plain", tmp_path / "claiming"
    for workdir, snakefile in [(plain, SNAKEFILE), (claiming, CLAIM + SNAKEFILE)]:
        workdir.mkdir()
        (workdir / "Snakefile").write_text(textwrap.dedent(snakefile))
        _kill_during_a_job(workdir)

    # What the claim fixes: Snakemake alone takes the killed run's locks for a live run's.
    returncode, output = _rerun(plain)
    assert returncode != 0 and "LockException" in output, output

    returncode, output = _rerun(claiming)
    assert returncode == 0, output
    assert "removed stale Snakemake locks of a killed run" in output
    assert (claiming / "done.txt").exists()
