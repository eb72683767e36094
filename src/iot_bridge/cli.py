"""``iot-bridge`` command line: the service and the operator's tools.

Exit codes: 0 ok, 1 the input was bad (a malformed payload, a bad recording, a rejected device
entry), 2 the invocation or configuration was wrong or the service cannot start; every exit 2
prints one line saying why.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from iot_bridge.devices import DeviceSet, device_from_json
from iot_bridge.errors import ConfigError, ParseError, StartupError
from iot_bridge.parsers import PARSERS, ParserOptions
from iot_bridge.parsers.base import ENERGY_TO_WH
from iot_bridge.settings import VARIABLES, Settings, sample_path

__all__ = ["COMMANDS", "main", "sample_path"]

Command = Callable[[argparse.Namespace], int]


def _fail(message: str, code: int = 2) -> int:
    print(f"iot-bridge: {message}", file=sys.stderr)
    return code


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


def _cannot_start(exc: BaseException) -> int:
    return _fail(f"cannot start: {exc}")


def _startup_error(exc: BaseException) -> StartupError | None:
    """The StartupError in ``exc``, also when a TaskGroup wrapped it in an exception group."""
    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _startup_error(inner)
            if found is not None:
                return found
    return None


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
    from iot_bridge.errors import StoreError
    from iot_bridge.runtime import preflight

    try:
        preflight.check(settings, create=True)
    except StartupError as exc:
        return _cannot_start(exc)
    setup_logging(settings.log_level)
    from iot_bridge.runtime.service import Bridge

    try:
        bridge = Bridge(settings)
    except StoreError as exc:  # a store that exists but cannot be opened (corrupt, locked)
        return _cannot_start(exc)
    try:
        asyncio.run(bridge.run())
    except (StartupError, BaseExceptionGroup) as exc:
        found = _startup_error(exc)
        if found is None:
            raise
        return _cannot_start(found)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the environment and the device list, without connecting to MQTT."""
    settings = _settings()
    if isinstance(settings, int):
        return settings
    from iot_bridge.errors import ConfigUnavailable
    from iot_bridge.odoo_api.client import OdooClient
    from iot_bridge.runtime import preflight
    from iot_bridge.runtime.config_source import ConfigSource

    try:
        from_file = preflight.check(settings, create=False)
    except StartupError as exc:
        return _cannot_start(exc)

    async def fetch() -> DeviceSet:
        assert settings.odoo_url is not None
        assert settings.odoo_token is not None
        client = OdooClient(settings.odoo_url, settings.odoo_token, settings.odoo_timeout)
        source = ConfigSource(client=client, devices_file=None, cache_path=None)
        try:
            return await source.fetch()
        finally:
            await client.close()

    print(f"MQTT:   {settings.mqtt_url} (client id {settings.mqtt_client_id})")
    print(f"Odoo:   {settings.odoo_url or 'none (standalone mode)'}")
    print(f"Data:   {settings.data_dir}")
    try:
        devices = from_file if from_file is not None else asyncio.run(fetch())
    except ConfigUnavailable as exc:  # run would start, use its cached config and retry
        return _fail(str(exc), 1)
    print(f"Devices: {len(devices.devices)} usable, {len(devices.errors)} rejected")
    for device in devices.devices:
        topics = ", ".join(device.subscriptions())
        print(f"  {device.device_id} ({device.parser_type}): {topics}")
    for problem in devices.errors:
        print(f"  rejected: {problem}")
    return 1 if devices.errors or not devices.devices else 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from iot_bridge.errors import StoreError
    from iot_bridge.outbox.store import Store

    data_dir = Path(args.data_dir or os.environ.get("DATA_DIR") or "data")
    if not (data_dir / "bridge.db").is_file():  # never make an empty store in a wrong place
        return _fail(f"no store at {data_dir / 'bridge.db'} (give the bridge's DATA_DIR)")
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


RUN_DESCRIPTION = """\
Run the bridge service, configured by the environment variables below.

exit status:
  0  stopped by SIGTERM or SIGINT
  2  it cannot start: a setting, the device file, the data directory or the health port
     is wrong; one line on standard error says which"""

CHECK_CONFIG_DESCRIPTION = """\
Check what `run` would check and list the devices it would meter, without connecting to
MQTT and without writing anything (no data directory, no config cache).

exit status:
  0  the bridge would start and every device entry is usable
  1  the bridge would start, but a device entry is rejected, no device is usable, or Odoo
     did not answer with the config (run would then use its cached config and retry)
  2  the bridge would not start: a setting, the device file, the data directory or the
     health port is wrong (HEALTH_PORT=0 skips the port, e.g. next to a running bridge);
     one line on standard error says which"""


def environment_help() -> str:
    """The environment variables with their defaults, for ``--help`` (from VARIABLES)."""
    width = min(shutil.get_terminal_size().columns, 100) - 2
    name_w = max(len(v.name) for v in VARIABLES)
    lines = ["environment variables:"]
    for v in VARIABLES:
        shown = v.shown_default.replace("`", "")
        default = shown if shown.startswith("(") else f"(default: {shown})"
        lines.append(
            textwrap.fill(
                f"{v.meaning.replace('`', '')} {default}",
                width,
                initial_indent=f"  {v.name:<{name_w}}  ",
                subsequent_indent=" " * (name_w + 4),
            )
        )
    return "\n".join(lines)


def build_parser(commands: dict[str, Command]) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="iot-bridge", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "run",
        help="run the bridge service (configured by environment)",
        description=RUN_DESCRIPTION,
        epilog=environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=commands["run"])

    p = sub.add_parser(
        "check-config",
        help="validate the environment and the device list",
        description=CHECK_CONFIG_DESCRIPTION,
        epilog=environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=commands["check-config"])

    p = sub.add_parser("simulate", help="publish a simulated Shelly PM Mini Gen3 scenario")
    from iot_bridge.tools.simulator import add_arguments

    add_arguments(p)
    p.set_defaults(func=commands["simulate"])

    p = sub.add_parser("demo", help="private broker + simulator + standalone bridge, then report")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING"])
    p.set_defaults(func=commands["demo"])

    p = sub.add_parser("dead-letters", help="events Odoo rejected for good")
    data_dir_help = "the bridge's DATA_DIR (default: $DATA_DIR or ./data)"
    p.add_argument("--data-dir", help=data_dir_help)
    actions = p.add_subparsers(dest="action", required=True)
    # --data-dir also after the action (dead-letters replay --data-dir X UID); SUPPRESS keeps
    # one given before it
    q = actions.add_parser("list", help="list them")
    q.add_argument("--data-dir", default=argparse.SUPPRESS, help=data_dir_help)
    q = actions.add_parser("replay", help="queue them again for delivery")
    q.add_argument("uids", nargs="*", help="replay only these event_uids")
    q.add_argument("--data-dir", default=argparse.SUPPRESS, help=data_dir_help)
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
