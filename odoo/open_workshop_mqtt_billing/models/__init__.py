from . import iot_device
from . import machine_session
from . import account_move
from . import invoicer
