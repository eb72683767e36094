{
    "name": "Open Workshop MQTT: Maintenance",
    "summary": "When it needs service: working hours from the bridge on the equipment, "
               "preventive requests every N working hours",
    "version": "18.0.1.0.0",
    "category": "Manufacturing/Maintenance",
    "website": "https://github.com/open-workshop/iot-bridge",
    "author": "Open Workshop",
    "maintainers": ["open-workshop"],
    "license": "LGPL-3",
    "development_status": "Beta",
    "depends": ["open_workshop_mqtt", "maintenance"],
    "data": [
        "security/ir.model.access.csv",
        "views/maintenance_views.xml",
        "views/iot_device_views.xml",
    ],
    "assets": {
        "web.assets_tests": [
            "open_workshop_mqtt_maintenance/static/tests/tours/*.js",
        ],
    },
    "installable": True,
}
