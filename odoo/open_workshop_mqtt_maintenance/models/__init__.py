from . import maintenance_equipment
from . import iot_device
from . import machine_session
