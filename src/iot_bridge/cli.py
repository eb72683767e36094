"""``iot-bridge`` command line: the service and the operator's tools.

Exit codes: 0 ok, 1 the input was bad (a malformed payload, a bad recording), 2 the invocation or
configuration was wrong.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import orjson

from iot_bridge.devices import ConfigError, device_from_json
from iot_bridge.parsers import PARSERS, ParseError, ParserOptions

Command = Callable[[argparse.Namespace], int]


def _fail(message: str, code: int = 2) -> int:
    print(f"iot-bridge: {message}", file=sys.stderr)
    return code


def sample_path(name: str) -> Path:
    return Path(str(resources.files("iot_bridge") / "samples" / name))


def cmd_replay(args: argparse.Namespace) -> int:
    from iot_bridge.replay import RecordingError, read_recording, replay, write_table

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


def build_parser(commands: dict[str, Command]) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="iot-bridge", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

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
    p.add_argument("--energy-unit", default="Wh", choices=["Wh", "kWh", "Wmin"])
    p.set_defaults(func=commands["parse"])
    return ap


COMMANDS: dict[str, Command] = {"replay": cmd_replay, "parse": cmd_parse}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(COMMANDS).parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
