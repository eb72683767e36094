from . import iot_bridge
from . import iot_device
from . import iot_event
from . import machine_session
from . import iot_event_retention
from . import res_config_settings
