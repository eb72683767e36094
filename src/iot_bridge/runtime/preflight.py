"""What can go wrong before the service starts, checked before it starts.

An operator who starts the bridge with a data directory it cannot write, a device file it cannot
read or a health port another process holds should get one line naming the cause and exit code
2, not a traceback or a bridge that runs and answers 503 forever. ``run`` and ``check-config``
call :func:`check` alike, so ``check-config`` says beforehand what ``run`` would say. Whatever
can only fail once the service runs (the port taken in the instant between this check and the
bind) the service raises as :class:`~iot_bridge.errors.StartupError` itself.

``create=False`` (``check-config``) only looks: it creates no directory and writes no file.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path

from iot_bridge.devices import DeviceSet
from iot_bridge.errors import ConfigUnavailable, StartupError
from iot_bridge.runtime.config_source import read_device_file
from iot_bridge.settings import Settings

STORE_FILE = "bridge.db"


def check(settings: Settings, *, create: bool) -> DeviceSet | None:
    """Raise :class:`StartupError` naming the first cause the bridge cannot start.

    Returns the device file's devices in standalone mode (``None`` with Odoo), so that
    ``check-config`` lists what it checked without reading the file twice.
    """
    check_data_dir(settings.data_dir, create=create)
    devices = None
    if settings.standalone:
        assert settings.devices_file is not None
        try:
            devices = read_device_file(settings.devices_file)
        except ConfigUnavailable as exc:
            raise StartupError(str(exc)) from None
    check_port_free(settings.health_host, settings.health_port)
    return devices


def check_data_dir(path: Path, *, create: bool) -> None:
    """``DATA_DIR`` is (or can be made) a directory the bridge can read and write."""
    where = f"DATA_DIR {path}"
    if path.exists() and not path.is_dir():
        raise StartupError(f"{where} is not a directory")
    if not path.exists():
        if create:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StartupError(f"{where} cannot be created: {exc.strerror or exc}") from None
        else:
            parent = _existing_ancestor(path)
            if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
                raise StartupError(f"{where} does not exist and {parent} is not writable")
            return
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise StartupError(f"{where} is not writable: {_why_not(path)}")
    store = path / STORE_FILE
    if store.exists() and not os.access(store, os.R_OK | os.W_OK):
        raise StartupError(f"{store} is not readable and writable: {_why_not(store)}")
    if create:  # access() trusts the mode bits; a real write also meets a read-only mount
        try:
            fd, name = tempfile.mkstemp(dir=path, prefix=".write-test-")
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            raise StartupError(f"{where} is not writable: {exc.strerror or exc}") from None


def _why_not(path: Path) -> str:
    """Why ``access()`` said no: a read-only mount refuses root too, the mode bits do not."""
    if os.statvfs(path).f_flag & os.ST_RDONLY:
        return "read-only file system"
    return "permission denied for this user"


def _existing_ancestor(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path("/")


def check_port_free(host: str, port: int) -> None:
    """Nothing listens on ``HEALTH_HOST:HEALTH_PORT``, and this process may listen there.

    Binds the way the health server will (``SO_REUSEADDR``, IPv6 sockets IPv6 only) and lets
    go again. Port 0 (any free port) cannot be taken.
    """
    if port == 0:
        return
    where = f"HEALTH_PORT {port} on {host}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"HEALTH_HOST {host!r} does not resolve: {exc.strerror}") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise StartupError(
                        f"{where} is already in use (another bridge running here?)"
                    ) from None
                raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from None
