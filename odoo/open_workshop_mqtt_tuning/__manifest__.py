{
    "name": "Open Workshop MQTT: Threshold Tuning",
    "summary": "A machine's recent power readings as a chart, with its thresholds and "
               "suggested ones from the gaps between its power modes",
    "version": "18.0.1.0.0",
    "category": "Manufacturing/Workshop",
    "website": "https://github.com/open-workshop/iot-bridge",
    "author": "Open Workshop",
    "maintainers": ["open-workshop"],
    "license": "LGPL-3",
    "development_status": "Beta",
    "depends": ["open_workshop_mqtt"],
    "data": [
        "views/iot_device_views.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "open_workshop_mqtt_tuning/static/src/power_chart/*",
        ],
        "web.assets_tests": [
            "open_workshop_mqtt_tuning/static/tests/tours/*.js",
        ],
    },
    "installable": True,
}
