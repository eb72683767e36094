"""``python -m iot_bridge`` is the ``iot-bridge`` command; without arguments it runs the service,
like the original's ``python main.py``."""

import sys

from iot_bridge.cli import main

sys.exit(main(sys.argv[1:] or ["run"]))
