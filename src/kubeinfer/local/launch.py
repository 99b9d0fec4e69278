"""The replica launcher: ``python -m kubeinfer.local.launch PLAN_JSON -- COMMAND...``.

Applies what must hold from the first instruction of the server process, then ``exec``s it (same pid): join the
replica's cgroups (memory limit, CPU quota), CPU affinity, ``RLIMIT_DATA``, and a parent-death signal so that replicas do not outlive a
platform that was killed. Doing this in a tiny exec'd program rather than a ``preexec_fn`` keeps the parent
(an asyncio process with threads) clear of fork-safety problems.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

_PR_SET_PDEATHSIG = 1


def apply(plan: dict[str, object]) -> None:
    groups = plan.get("cgroups")
    for cgroup in groups if isinstance(groups, list) else []:
        try:
            with open(os.path.join(str(cgroup), "cgroup.procs"), "w") as f:
                f.write("0")
        except OSError as e:
            print(f"kubeinfer launch: cannot join cgroup {cgroup}: {e}", file=sys.stderr, flush=True)
    cpus = plan.get("cpus")
    if isinstance(cpus, list) and cpus:
        try:
            os.sched_setaffinity(0, {int(c) for c in cpus})
        except (OSError, AttributeError) as e:
            print(f"kubeinfer launch: cannot set CPU affinity {cpus}: {e}", file=sys.stderr, flush=True)
    limit = plan.get("rlimit_data")
    if isinstance(limit, int) and limit > 0:
        try:
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        except (OSError, ValueError) as e:
            print(f"kubeinfer launch: cannot set RLIMIT_DATA {limit}: {e}", file=sys.stderr, flush=True)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() == 1:  # the parent died before prctl took effect
                sys.exit(1)
        except (OSError, AttributeError):
            pass


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m kubeinfer.local.launch PLAN_JSON -- COMMAND...")
    apply(json.loads(argv[0]))
    os.execv(argv[2], argv[2:])  # noqa: S606 - argv built by the controller, no shell


if __name__ == "__main__":
    main(sys.argv[1:])
