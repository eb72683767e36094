from . import badge
from . import badge_scan
from . import iot_device
from . import iot_event
from . import machine_session
from . import res_partner
from . import res_config_settings
