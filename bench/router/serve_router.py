"""Run a kubeinfer Router alone in front of given replicas, for benchmarks and manual checks.

    python bench/router/serve_router.py --port 0 --backend 127.0.0.1:9001[:grpc][@/path/to/replica.sock] [...]

Prints ``ROUTER_LISTENING {"http": .., "grpc": ..}`` once it listens; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

import uvloop

from kubeinfer.local.router import Backend, Router


async def main(args: argparse.Namespace) -> None:
    router = Router()
    backends = []
    for i, spec in enumerate(args.backend):
        addr, _, uds = spec.partition("@")
        parts = addr.split(":")
        grpc_port = int(parts[2]) if len(parts) > 2 and parts[2] else None
        backends.append(Backend(f"r{i}", parts[0], int(parts[1]), grpc_port, uds=uds or None))
    router.set_backends(backends)
    http, grpc_port = await router.start("127.0.0.1", args.port, args.grpc_port if args.grpc else None)
    print("ROUTER_LISTENING " + json.dumps({"http": http, "grpc": grpc_port}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await router.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--grpc", action="store_true")
    p.add_argument("--grpc-port", type=int, default=0)
    p.add_argument("--backend", action="append", default=[])
    uvloop.run(main(p.parse_args()))
