"""IoT MQTT bridge for Odoo: smart-plug power readings in, machine-usage sessions out."""

__version__ = "0.1.0"
