"""Where the device list comes from: Odoo (``GET /ows/iot/config``) with the last good answer
cached on disk, or ``DEVICES_FILE`` in standalone mode. Both give a :class:`DeviceSet`."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import orjson

from iot_bridge.devices import DeviceSet, device_set_from_json
from iot_bridge.errors import ConfigError, ConfigUnavailable, OdooAuthError, OdooError
from iot_bridge.odoo_api.client import OdooClient
from iot_bridge.outbox.store import private_dir

log = logging.getLogger("iot_bridge.config")


class ConfigSource:
    def __init__(
        self, *, client: OdooClient | None, devices_file: Path | None, cache_path: Path | None
    ) -> None:
        """``cache_path=None``: never write a cache (``check-config`` only looks)."""
        self.client = client
        self.devices_file = devices_file
        self.cache_path = cache_path

    @property
    def describe(self) -> str:
        return f"Odoo {self.client.base_url}" if self.client else f"file {self.devices_file}"

    async def fetch(self) -> DeviceSet:
        if self.client is not None:
            try:
                doc = await self.client.fetch_config()
                devices = device_set_from_json(doc)
            except (OdooError, ConfigError) as exc:
                auth = isinstance(exc, OdooAuthError)
                raise ConfigUnavailable(f"config from Odoo: {exc}", auth=auth) from None
            try:
                if self.cache_path is not None:
                    await asyncio.to_thread(_write_atomically, self.cache_path, orjson.dumps(doc))
            except OSError as exc:  # a full disk must not stop a good config from applying
                log.warning("cannot cache the config in %s: %s", self.cache_path, exc)
            return devices
        assert self.devices_file is not None
        return await asyncio.to_thread(read_device_file, self.devices_file)

    def load_cached(self) -> DeviceSet | None:
        """The last good Odoo config, so the bridge detects sessions while Odoo is down."""
        if self.client is None or self.cache_path is None or not self.cache_path.exists():
            return None
        try:
            return device_set_from_json(orjson.loads(self.cache_path.read_bytes()))
        except (OSError, orjson.JSONDecodeError, ConfigError):
            return None


def read_device_file(path: Path) -> DeviceSet:
    try:
        return device_set_from_json(orjson.loads(path.read_bytes()))
    except OSError as exc:
        raise ConfigUnavailable(f"DEVICES_FILE {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigUnavailable(f"DEVICES_FILE {path}: invalid JSON: {exc}") from None
    except ConfigError as exc:
        raise ConfigUnavailable(f"DEVICES_FILE {path}: {exc}") from None


def _write_atomically(path: Path, data: bytes) -> None:
    """The cache holds the workshop's device list: 0600 in a 0700 directory, like the store."""
    private_dir(path.parent)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover .tmp from an older version keeps its mode otherwise
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
