{
    "name": "Open Workshop MQTT",
    "summary": "Machine usage sessions from smart-plug power readings, fed by the IoT MQTT bridge",
    "description": """
Receives machine-usage events from the iot-bridge (MQTT -> Odoo) over a small REST API:

* ``GET /ows/iot/config`` serves the devices of the calling bridge,
* ``POST /ows/iot/event`` and ``POST /ows/iot/events`` store events idempotently
  (``event_uid``) and turn ``run_start`` / ``run_stop`` into machine usage sessions,
* ``POST /ows/iot/status`` takes the bridge's heartbeat: live machine state for a board that
  updates itself over the bus, silence alerts, and plugs discovered on the broker to adopt.

Bridges authenticate with a bearer token that is stored hashed and shown once.
""",
    "version": "18.0.1.1.0",
    "category": "Manufacturing/Workshop",
    "author": "Open Workshop",
    "website": "https://github.com/open-workshop/iot-bridge",
    "maintainers": ["open-workshop"],
    "development_status": "Beta",
    "license": "LGPL-3",
    "depends": ["base", "web", "bus", "mail"],
    "data": [
        "security/security.xml",
        "security/ir.model.access.csv",
        "data/iot_alert_data.xml",
        "data/ir_cron_data.xml",
        "wizard/bridge_token_wizard_views.xml",
        "views/iot_bridge_views.xml",
        "views/iot_device_views.xml",
        "views/iot_discovered_plug_views.xml",
        "views/machine_session_views.xml",
        "views/iot_event_views.xml",
        "views/res_config_settings_views.xml",
        "views/menus.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "open_workshop_mqtt/static/src/units.js",
            "open_workshop_mqtt/static/src/fields/*",
            "open_workshop_mqtt/static/src/board/*",
        ],
        "web.assets_tests": [
            "open_workshop_mqtt/static/tests/tours/*",
        ],
    },
    "installable": True,
    "application": True,
}
