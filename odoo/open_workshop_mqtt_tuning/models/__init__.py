from . import iot_device
