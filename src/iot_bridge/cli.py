"""``iot-bridge`` command line: the service and the operator's tools.

Exit codes: 0 ok, 1 the input was bad (a malformed payload, a bad recording), 2 the invocation or
configuration was wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from iot_bridge.devices import DeviceSet, device_from_json
from iot_bridge.errors import ConfigError, ParseError
from iot_bridge.parsers import PARSERS, ParserOptions
from iot_bridge.parsers.base import ENERGY_TO_WH

if TYPE_CHECKING:
    from iot_bridge.settings import Settings

Command = Callable[[argparse.Namespace], int]


def _fail(message: str, code: int = 2) -> int:
    print(f"iot-bridge: {message}", file=sys.stderr)
    return code


def sample_path(name: str) -> Path:
    return Path(str(resources.files("iot_bridge") / "samples" / name))


def cmd_replay(args: argparse.Namespace) -> int:
    from iot_bridge.errors import RecordingError
    from iot_bridge.tools.replay import read_recording, replay, write_table

    try:
        device = device_from_json(orjson.loads(Path(args.device).read_bytes()))
    except (OSError, orjson.JSONDecodeError, ConfigError) as exc:
        return _fail(f"--device {args.device}: {exc}")
    try:
        with open(args.file, encoding="utf-8") as fh:
            sessions = replay(device, read_recording(fh))
    except OSError as exc:
        return _fail(f"{args.file}: {exc}")
    except RecordingError as exc:
        return _fail(f"{args.file}: {exc}", 1)
    if args.json:
        for session in sessions:
            sys.stdout.write(orjson.dumps(session).decode() + "\n")
    else:
        write_table(sessions, sys.stdout)
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    parser = PARSERS.get(args.parser)
    if parser is None:
        return _fail(f"--parser {args.parser!r} is unknown (known: {', '.join(sorted(PARSERS))})")
    options = ParserOptions(
        channel=args.channel,
        power_path=args.power_path,
        energy_path=args.energy_path,
        energy_unit=args.energy_unit,
    )
    payload = sys.stdin.buffer.read()
    try:
        reading = parser.parse(args.topic, payload, options)
    except ParseError as exc:
        print(f"parse error: {exc}", file=sys.stderr)
        return 1
    doc = {"reading": None} if reading is None else reading.as_dict()
    sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    return 0


def _settings() -> Settings | int:
    from iot_bridge.errors import SettingsError
    from iot_bridge.settings import load

    try:
        return load()
    except SettingsError as exc:
        return _fail(f"configuration error: {exc}")


def setup_logging(level: str) -> None:
    from iot_bridge.throttle import throttle_root_handlers

    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s [%(levelname)s] %(message)s",
        stream=sys.stderr,
    )
    throttle_root_handlers()  # a repeated error is one line per minute, with a count


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings()
    if isinstance(settings, int):
        return settings
    setup_logging(settings.log_level)
    from iot_bridge.errors import StoreError
    from iot_bridge.runtime.service import Bridge

    try:
        bridge = Bridge(settings)
    except StoreError as exc:
        return _fail(str(exc), 1)
    asyncio.run(bridge.run())
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the environment and the device list, without connecting to MQTT."""
    settings = _settings()
    if isinstance(settings, int):
        return settings
    from iot_bridge.errors import ConfigUnavailable
    from iot_bridge.odoo_api.client import OdooClient
    from iot_bridge.runtime.config_source import ConfigSource

    print(f"MQTT:   {settings.mqtt_url} (client id {settings.mqtt_client_id})")
    print(f"Odoo:   {settings.odoo_url or 'none (standalone mode)'}")
    print(f"Data:   {settings.data_dir}")

    async def fetch() -> DeviceSet:
        client = None
        if settings.odoo_url and settings.odoo_token:
            client = OdooClient(settings.odoo_url, settings.odoo_token, settings.odoo_timeout)
        source = ConfigSource(client=client, devices_file=settings.devices_file, cache_path=None)
        try:
            return await source.fetch()
        finally:
            if client is not None:
                await client.close()

    try:
        devices = asyncio.run(fetch())
    except ConfigUnavailable as exc:
        return _fail(str(exc), 1)
    print(f"Devices: {len(devices.devices)} usable, {len(devices.errors)} rejected")
    for device in devices.devices:
        topics = ", ".join(device.subscriptions())
        print(f"  {device.device_id} ({device.parser_type}): {topics}")
    for problem in devices.errors:
        print(f"  rejected: {problem}")
    return 1 if devices.errors else 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from iot_bridge.errors import StoreError
    from iot_bridge.outbox.store import Store

    data_dir = Path(args.data_dir or os.environ.get("DATA_DIR") or "data")
    try:
        store = Store(data_dir / "bridge.db")
    except StoreError as exc:
        return _fail(str(exc), 1)
    try:
        if args.action == "list":
            letters = store.dead_letters()
            for d in letters:
                print(
                    f"{d.event_uid}  {d.event_type:<17} {d.device_id}  "
                    f"attempts={d.attempts}  {d.error}"
                )
            print(f"{len(letters)} dead letter(s)")
        else:
            count = store.replay_dead_letters(args.uids or None)
            print(f"{count} event(s) queued again; a running bridge delivers them next")
    finally:
        store.close()
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from iot_bridge.tools.simulator import run

    return run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    from iot_bridge.tools.demo import main as demo

    return demo()


def build_parser(commands: dict[str, Command]) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="iot-bridge", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the bridge service (configured by environment)")
    p.set_defaults(func=commands["run"])

    p = sub.add_parser("check-config", help="validate the environment and the device list")
    p.set_defaults(func=commands["check-config"])

    p = sub.add_parser("simulate", help="publish a simulated Shelly PM Mini Gen3 scenario")
    from iot_bridge.tools.simulator import add_arguments

    add_arguments(p)
    p.set_defaults(func=commands["simulate"])

    p = sub.add_parser("demo", help="private broker + simulator + standalone bridge, then report")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING"])
    p.set_defaults(func=commands["demo"])

    p = sub.add_parser("dead-letters", help="events Odoo rejected for good")
    p.add_argument("action", choices=["list", "replay"])
    p.add_argument("uids", nargs="*", help="replay only these event_uids")
    p.add_argument("--data-dir", help="the bridge's DATA_DIR (default: $DATA_DIR or ./data)")
    p.set_defaults(func=commands["dead-letters"])

    p = sub.add_parser("replay", help="run a recording through parser and detector")
    p.add_argument("file", help="JSON lines of {t, topic, payload}")
    p.add_argument("--device", required=True, help="one device entry of the GET config shape")
    p.add_argument("--json", action="store_true", help="one JSON object per session")
    p.set_defaults(func=commands["replay"])

    p = sub.add_parser("parse", help="parse one payload from standard input")
    p.add_argument("--parser", required=True, help=f"one of {', '.join(sorted(PARSERS))}")
    p.add_argument("--topic", required=True)
    p.add_argument("--channel", type=int, default=0)
    p.add_argument("--power-path", default="power", help="generic parser: dotted power path")
    p.add_argument("--energy-path", default=None, help="generic parser: dotted energy path")
    p.add_argument("--energy-unit", default="Wh", choices=sorted(ENERGY_TO_WH))
    p.set_defaults(func=commands["parse"])
    return ap


COMMANDS: dict[str, Command] = {
    "run": cmd_run,
    "check-config": cmd_check_config,
    "dead-letters": cmd_dead_letters,
    "simulate": cmd_simulate,
    "demo": cmd_demo,
    "replay": cmd_replay,
    "parse": cmd_parse,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(COMMANDS).parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
