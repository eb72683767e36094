from odoo import models

from .iot_device import BOARD_CHANNEL


class IrWebsocket(models.AbstractModel):
    _inherit = "ir.websocket"

    def _build_bus_channel_list(self, channels):
        """Workshop IoT users hear the machine board of every company they may open: the
        channel is the company's, so a user never receives another company's machines."""
        channels = super()._build_bus_channel_list(channels)
        user = self.env.user
        if user and user._is_internal() and user.has_group("open_workshop_mqtt.group_iot_user"):
            channels.extend((company, BOARD_CHANNEL) for company in user.company_ids)
        return channels
