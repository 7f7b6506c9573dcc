"""The rig's SSH server where OpenSSH's sshd is not installed: AsyncSSH (a well-kept pure-Python SSH library).

    python tests/ssh_fallback.py HOST_KEY AUTHORIZED_KEYS HOME PATH

It listens on 127.0.0.1 (a free port, printed as "listening PORT" once ready), accepts only the keys in
AUTHORIZED_KEYS, and runs each exec request as `/bin/sh -c COMMAND` with HOME and PATH set, the channel's
stdin, stdout and stderr piped to it and its exit status sent back, as sshd does without a terminal.
SIGUSR1 aborts every open connection (the rig's "connection lost").
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import asyncssh

CONNECTIONS: set[asyncssh.SSHServerConnection] = set()


class Server(asyncssh.SSHServer):
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        CONNECTIONS.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        CONNECTIONS.discard(self.conn)


async def _copy(source: asyncio.StreamReader, target) -> None:
    """Forward until EOF; once the channel is gone, keep draining so the command never blocks on a full pipe."""
    while data := await source.read(1 << 16):
        try:
            target.write(data)
        except (asyncssh.Error, OSError):
            pass


async def run_command(process: asyncssh.SSHServerProcess, env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", process.command or "", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=env["HOME"], start_new_session=True)

    async def feed() -> None:
        try:
            while data := await process.stdin.read(1 << 16):
                proc.stdin.write(data)
                await proc.stdin.drain()
        except (asyncssh.Error, OSError):
            pass
        finally:
            proc.stdin.close()

    feeding = asyncio.create_task(feed())
    await asyncio.gather(_copy(proc.stdout, process.stdout), _copy(proc.stderr, process.stderr))
    status = await proc.wait()
    feeding.cancel()
    try:
        process.exit(status if status >= 0 else 128 - status)
    except (asyncssh.Error, OSError):
        pass


async def main(host_key: str, authorized: str, home: str, path: str) -> None:
    env = {"HOME": home, "PATH": path, "LANG": "C.UTF-8", "USER": os.environ.get("USER", "root")}
    server = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[host_key], authorized_client_keys=authorized,
                                   server_factory=Server, encoding=None,
                                   process_factory=lambda process: run_command(process, env))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: [conn.abort() for conn in list(CONNECTIONS)])
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
