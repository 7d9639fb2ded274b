"""One trainer per run folder: an exclusive `flock` on RUN/.lock, held while `train_run` runs.

The kernel drops the lock when its holder's process ends, however it ends (SIGKILL included), so a
lock left by a killed run never blocks the next one. The file itself stays; only the lock on it
means anything (its content, the holder's pid, is for the refusal message).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import ConfigError, VaekitError

LOCK_NAME = ".lock"


class RunFolderBusy(VaekitError):
    """Another process is training into the same run folder. Exit code 2."""


class RunLock:
    """The lock of one run folder; `acquire` refuses at once instead of waiting, `release` is idempotent."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, create: bool = True) -> bool:
        """Take the lock or raise RunFolderBusy; return whether it is held. create=False writes nothing:
        a folder without a lock file is left as it is (and not locked), one with it keeps its content;
        create=True, for a caller about to write into the folder, also records this process's pid."""
        if self._fd is None and not self._lock(create):
            return False
        if create:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        return True

    def _lock(self, create: bool) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        except (FileNotFoundError, NotADirectoryError):
            if create:
                raise
            return False
        except OSError as e:  # a read-only run folder, say
            raise ConfigError(f"{self.path}: cannot open the run folder's lock file ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise RunFolderBusy(f"{self.path.parent} is being trained by another process{pid}; wait for it "
                                "to finish, or stop it and continue with --resume") from None
        except OSError as e:  # a file system without flock
            os.close(fd)
            raise ConfigError(f"{self.path}: cannot lock the run folder ({e.strerror or e})") from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor of the open file drops the flock
            self._fd = None
