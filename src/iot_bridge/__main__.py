"""``python -m iot_bridge`` is the ``iot-bridge`` command."""

import sys

from iot_bridge.cli import main

sys.exit(main())
