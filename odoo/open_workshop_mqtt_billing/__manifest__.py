{
    "name": "Open Workshop MQTT: Billing",
    "summary": "What it costs: invoice members' machine sessions per working hour, session hour or kWh",
    "version": "18.0.1.0.0",
    "category": "Accounting/Accounting",
    "website": "https://github.com/open-workshop/iot-bridge",
    "author": "Open Workshop",
    "maintainers": ["open-workshop"],
    "license": "LGPL-3",
    "development_status": "Beta",
    "depends": ["open_workshop_mqtt_badge", "account"],
    "data": [
        "security/ir.model.access.csv",
        "views/iot_device_views.xml",
        "views/machine_session_views.xml",
        "views/account_move_views.xml",
        "wizard/session_invoice_wizard_views.xml",
        "views/menus.xml",
    ],
    "assets": {
        "web.assets_tests": [
            "open_workshop_mqtt_billing/static/tests/tours/*.js",
        ],
    },
    "installable": True,
}
