from . import iot_bridge
from . import iot_device
from . import iot_event
from . import machine_session
