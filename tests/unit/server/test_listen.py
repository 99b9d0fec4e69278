"""The connection cap never exceeds what the file-descriptor limit allows (past it accept() fails for everyone)."""

from __future__ import annotations

import resource
import subprocess
import sys


def test_the_cap_is_lowered_to_the_descriptor_limit_in_a_process_limited_to_512() -> None:
    # A child with ulimit -n 512 (soft and hard): it cannot raise it, so 10,000 connections become what fits.
    code = (
        "import resource, logging; resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512));"
        "from kubeinfer.server.listen import connection_cap;"
        "print(connection_cap(10000), connection_cap(10000, per_connection=2), connection_cap(100))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert [int(x) for x in out] == [512 - 256, (512 - 256) // 2, 100]


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    code = (
        f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({min(soft, 256)}, {hard}));"
        "from kubeinfer.server.listen import connection_cap; connection_cap(10);"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    expected = hard if hard != resource.RLIM_INFINITY else max(min(soft, 256), 1 << 20)
    assert int(out) == expected
