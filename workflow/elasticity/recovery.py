"""Start cleanly after a Snakemake controller was killed (`kill -9`, OOM killer, lost node).

A killed controller runs no exit code, so it leaves behind Snakemake's lock files (the next run
fails with LockException until `snakemake --unlock`) and the temp dir of the runner's forkserver.
Both are recognised here by who is still alive: an flock held for the controller's lifetime, and
the pid in the name of a private temp dir.
"""

from __future__ import annotations

import fcntl
import multiprocessing.util
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

CONTROLLER_LOCK = "elasticity-controller.lock"
# Snakemake's file persistence reads `<n>.input.lock` and `<n>.output.lock` (plain files) in
# .snakemake/locks as locks (snakemake/persistence/file.py, FilePersistence._read_locks).
SNAKEMAKE_LOCK = re.compile(r"[0-9]+\.(input|output)\.lock")
TEMPDIR = re.compile(r"elasticity-([0-9]+)-[a-z0-9_]+")
# What multiprocessing adds below its temp dir for the forkserver's socket
# (pymp-XXXXXXXX/listener-XXXXXXXX), and the most an AF_UNIX socket path may have.
_SOCKET_TAIL = len("/pymp-12345678/listener-12345678")
_AF_UNIX_MAX = 107

# Open for the life of the process: the flock lasts as long as the descriptor.
_controller_fd: int | None = None
_private_tempdir: Path | None = None
_tempdir_done = False
_tempdir_lock = threading.Lock()


def _close_in_child() -> None:
    global _controller_fd
    # A fork shares the lock; closing the child's copy leaves the parent's lock in place, and a
    # job that outlives a killed controller no longer keeps its lock alive.
    if _controller_fd is not None:
        os.close(_controller_fd)
        _controller_fd = None


os.register_at_fork(after_in_child=_close_in_child)


def claim_controller(workdir: str | Path = ".") -> str | None:
    """Hold this workflow's controller lock in `workdir` for the life of the process; if no
    other process held it, remove Snakemake's locks there (left by a killed run).

    Returns a message naming what was removed, for the caller to log; None when there was
    nothing stale, when another controller runs here (its locks are live: Snakemake reports
    them as usual) or when this process holds the lock already (the locks may be its own).
    """
    global _controller_fd
    if _controller_fd is not None:
        return None
    state = Path(workdir) / ".snakemake"
    state.mkdir(exist_ok=True)
    fd = os.open(state / CONTROLLER_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        # Held by a running controller; or a filesystem without flock, where nothing can tell
        # a live lock from a stale one and Snakemake's own check must stand.
        os.close(fd)
        return None
    _controller_fd = fd
    locks = state / "locks"
    stale = sorted(path for path in locks.glob("*.lock")
                   if SNAKEMAKE_LOCK.fullmatch(path.name) and not path.is_dir())
    for path in stale:
        path.unlink(missing_ok=True)
    if not stale:
        return None
    return (f"removed stale Snakemake locks of a killed run (no controller holds "
            f"{state / CONTROLLER_LOCK}): {', '.join(str(path) for path in stale)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_stale_tempdirs(base: str | Path | None = None) -> list[Path]:
    """Remove this user's `elasticity-<pid>-*` dirs in `base` (default: the system temp dir)
    whose process is gone; return them.

    A pid names a process of this machine: a temp dir shared with other machines or pid
    namespaces would need more than this.
    """
    base = Path(tempfile.gettempdir() if base is None else base)
    removed = []
    for entry in os.scandir(base):
        match = TEMPDIR.fullmatch(entry.name)
        if (match is None or not entry.is_dir(follow_symlinks=False)
                or entry.stat(follow_symlinks=False).st_uid != os.getuid()
                or _alive(int(match[1]))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def private_mp_tempdir() -> Path | None:
    """Give multiprocessing (the forkserver's socket) a temp dir named by this process's pid,
    removed at normal exit and, after a kill, by the next process that calls this; sweep such
    dirs of dead processes now. Once per process; later calls return the same dir.

    Returns the dir, or None where the temp dir's path is too long to add one more level below
    it (multiprocessing then keeps its own `pymp-*` dir).
    """
    global _private_tempdir, _tempdir_done
    with _tempdir_lock:
        if _tempdir_done:
            return _private_tempdir
        _tempdir_done = True
        base = tempfile.gettempdir()
        sweep_stale_tempdirs(base)
        private = Path(tempfile.mkdtemp(prefix=f"elasticity-{os.getpid()}-", dir=base))
        if len(os.fsencode(private)) + _SOCKET_TAIL > _AF_UNIX_MAX:
            private.rmdir()
            return None
        saved = tempfile.tempdir
        tempfile.tempdir = str(private)
        try:
            multiprocessing.util.get_temp_dir()
        finally:
            tempfile.tempdir = saved
        # multiprocessing removes its own dir inside at exit with priority -100 (and complains if
        # it is gone already); ours goes after it. Its exit hook runs finalizers only in the
        # process that made them, so a forked child never removes the parent's dir.
        multiprocessing.util.Finalize(None, shutil.rmtree, args=(private,),
                                      kwargs={"ignore_errors": True}, exitpriority=-200)
        _private_tempdir = private
        return private
