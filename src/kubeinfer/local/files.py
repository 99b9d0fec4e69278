"""State files of a local service, private to their owner (folders 0700, files 0600, written atomically), and
whether the process a state file names is still alive."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["pid_alive", "private_dir", "write_private"]


def private_dir(folder: Path) -> Path:
    """Create ``folder`` (and its parents) readable by its owner only (0700): state folders hold the control port,
    its token, logs with request data, and copies of specs."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def write_private(path: Path, text: str) -> None:
    """Write ``path`` atomically (a temporary file, then rename), readable by its owner only (0600)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts: it is alive, just not ours to signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
