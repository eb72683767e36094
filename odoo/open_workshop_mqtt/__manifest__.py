{
    "name": "Open Workshop MQTT",
    "summary": "Machine usage sessions from smart-plug power readings, fed by the IoT MQTT bridge",
    "description": """
Receives machine-usage events from the iot-bridge (MQTT -> Odoo) over a small REST API:

* ``GET /ows/iot/config`` serves the devices of the calling bridge,
* ``POST /ows/iot/event`` and ``POST /ows/iot/events`` store events idempotently
  (``event_uid``) and turn ``run_start`` / ``run_stop`` into machine usage sessions.

Bridges authenticate with a bearer token that is stored hashed and shown once.
""",
    "version": "18.0.1.0.0",
    "category": "Manufacturing/Workshop",
    "author": "Open Workshop",
    "license": "LGPL-3",
    "depends": ["base", "web"],
    "data": [
        "security/security.xml",
        "security/ir.model.access.csv",
        "data/ir_cron_data.xml",
        "wizard/bridge_token_wizard_views.xml",
        "views/iot_bridge_views.xml",
        "views/iot_device_views.xml",
        "views/machine_session_views.xml",
        "views/iot_event_views.xml",
        "views/res_config_settings_views.xml",
        "views/menus.xml",
    ],
    "installable": True,
    "application": True,
}
