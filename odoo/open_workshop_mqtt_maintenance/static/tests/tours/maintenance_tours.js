/** @odoo-module **/

import { registry } from "@web/core/registry";

// The maintenance manager gives the machine's equipment a plan: service every 2 working hours.
registry.category("web_tour.tours").add("ows_maintenance_set_plan", {
    url: "/odoo/action-maintenance.hr_equipment_action",
    steps: () => [
        {
            content: "Open the equipment fed by the bridge",
            trigger: ".o_kanban_record:contains('Tour Mill'), .o_data_row:contains('Tour Mill')",
            run: "click",
        },
        {
            content: "Its working hours",
            trigger: ".o_notebook a:contains('Working Hours')",
            run: "click",
        },
        {
            content: "Service every 2 working hours",
            trigger: ".o_field_widget[name='ows_service_interval_h'] input",
            run: "edit 2",
        },
        {
            trigger: ".o_form_button_save",
            run: "click",
        },
        {
            content: "The next service is due at 2 h",
            trigger: ".o_form_saved .o_field_widget[name='ows_next_service_h']:contains('2.00')",
        },
    ],
});

// After the bridge reported a 2.5 h session: the counter, and the request it opened.
registry.category("web_tour.tours").add("ows_maintenance_request_opened", {
    url: "/odoo/action-maintenance.hr_equipment_action",
    steps: () => [
        {
            trigger: ".o_kanban_record:contains('Tour Mill'), .o_data_row:contains('Tour Mill')",
            run: "click",
        },
        {
            content: "The counter has the session's working hours",
            trigger: ".oe_stat_button:has(.o_stat_text:contains('Working Hours')) .o_stat_value:contains('2.5')",
        },
        {
            content: "Its maintenance requests",
            trigger: ".oe_stat_button:contains('Maintenance')",
            run: "click",
        },
        {
            content: "The preventive request opened by the counter",
            trigger: ".o_kanban_record:contains('Service after 2 working hours: Tour Mill'), .o_data_row:contains('Service after 2 working hours: Tour Mill')",
            run: "click",
        },
        {
            trigger: ".o_field_widget[name='maintenance_type'] input[data-value='preventive']:checked",
        },
        {
            content: "It says where the counter stood",
            trigger: ".o_field_widget[name='ows_working_hours']:contains('02:30')",
        },
    ],
});
