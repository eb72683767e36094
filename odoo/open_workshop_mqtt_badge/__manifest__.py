{
    "name": "Open Workshop MQTT: Badges",
    "summary": "Who used the machine: members on sessions, set from badge readers next to the machines",
    "version": "18.0.1.0.0",
    "category": "Manufacturing/Workshop",
    "website": "https://github.com/open-workshop/iot-bridge",
    "author": "Open Workshop",
    "maintainers": ["open-workshop"],
    "license": "LGPL-3",
    "development_status": "Beta",
    "depends": ["open_workshop_mqtt"],
    "data": [
        "security/ir.model.access.csv",
        "security/security.xml",
        "views/badge_views.xml",
        "views/badge_scan_views.xml",
        "views/machine_session_views.xml",
        "views/iot_device_views.xml",
        "views/res_partner_views.xml",
        "views/res_config_settings_views.xml",
        "views/menus.xml",
    ],
    "assets": {
        "web.assets_tests": [
            "open_workshop_mqtt_badge/static/tests/tours/*.js",
        ],
    },
    "installable": True,
}
