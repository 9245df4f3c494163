"""Loopback only: a process that imports this (``PYTHONPATH`` holding this folder, ``LOOPBACK_GUARD_LOG`` set)
cannot reach beyond 127.0.0.1, and every attempt is written to that log.

The deploy tests put it under the deploy, MiniStack and every Lambda MiniStack runs, then fail if the log has a
line: a client that ignores the emulator's endpoint (a default ``*.amazonaws.com`` URL) is found, never used.
The one exception is the Python package index, which ``chalice deploy`` asks for the Lambdas' Linux wheels.
"""
import os
import socket

_LOG = os.environ.get("LOOPBACK_GUARD_LOG")
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}
_PACKAGE_INDEX = {"pypi.org", "files.pythonhosted.org"}


def _local(host: object) -> bool:
    name = (host.decode() if isinstance(host, bytes) else str(host or "")).strip("[]").lower()
    return name in _LOCAL_NAMES or name.endswith(".localhost") or name.startswith("127.")


def _refuse(host: object) -> None:
    with open(_LOG, "a") as log:  # type: ignore[arg-type]
        log.write(f"pid {os.getpid()} reached for {host!r}\n")
    raise OSError(f"loopback guard: {host!r} is beyond 127.0.0.1")


if _LOG:
    _getaddrinfo = socket.getaddrinfo
    _connect = socket.socket.connect

    _index_addresses: set = set()  # what the package index's names resolved to

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host is not None and not _local(host) and str(host) not in _PACKAGE_INDEX:
            _refuse(host)
        answers = _getaddrinfo(host, *args, **kwargs)
        if str(host) in _PACKAGE_INDEX:
            _index_addresses.update(answer[4][0] for answer in answers)
        return answers

    def connect(self, address):  # type: ignore[no-untyped-def]
        if (self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0])
                and address[0] not in _index_addresses):
            _refuse(address[0])
        return _connect(self, address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect
