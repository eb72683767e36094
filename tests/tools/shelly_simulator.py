#!/usr/bin/env python3
"""Shelly PM Mini Gen3 simulator, at the path the original specification names.

    python tests/tools/shelly_simulator.py --broker localhost --port 1883 --no-tls \
        --username "" --password "" --scenario full_session

The code lives in ``iot_bridge.tools.simulator`` (also ``iot-bridge simulate``).
"""

import sys

from iot_bridge.tools.simulator import main

if __name__ == "__main__":
    sys.exit(main())
