/** @odoo-module **/

import { registry } from "@web/core/registry";

// Staff meet an unknown badge that was scanned before a session, assign it to the member
// holding it, find the session attributed, correct it by hand and give it back to the badge.
registry.category("web_tour.tours").add("ows_badge_attribute_session", {
    url: "/odoo/action-open_workshop_mqtt_badge.action_badge_unknown",
    steps: () => [
        {
            content: "The unknown badge is listed",
            trigger: ".o_data_row td[name='uid']:contains('C0FFEE42')",
            run: "click",
        },
        {
            content: "Assign it to the member",
            trigger: ".o_data_row.o_selected_row .o_field_widget[name='partner_id'] input",
            run: "edit Tour Member",
        },
        {
            trigger: ".o-autocomplete--dropdown-menu .dropdown-item:contains('Tour Member')",
            run: "click",
        },
        {
            content: "Save the row",
            trigger: ".o_list_button_save",
            run: "click",
        },
        {
            trigger: ".o_data_row:not(.o_selected_row) td[name='partner_id']:contains('Tour Member')",
        },
        {
            content: "Open the sessions",
            trigger: ".o_menu_sections button:contains('Sessions'), .o_menu_sections a:contains('Sessions')",
            run: "click",
        },
        {
            content: "The session shows its member",
            trigger: ".o_data_row:has(td[name='machine_name']:contains('Tour Laser')) td[name='partner_id']:contains('Tour Member')",
            run: "click",
        },
        {
            content: "It came from the badge",
            trigger: ".o_field_widget[name='member_source']:contains('Badge')",
        },
        {
            content: "Staff correct the member",
            trigger: ".o_field_widget[name='partner_id'] input",
            run: "edit Other Member",
        },
        {
            trigger: ".o-autocomplete--dropdown-menu .dropdown-item:contains('Other Member')",
            run: "click",
        },
        {
            trigger: ".o_form_button_save",
            run: "click",
        },
        {
            content: "Now it is the staff's choice",
            trigger: ".o_field_widget[name='member_source']:contains('Set by staff')",
        },
        {
            content: "Give it back to the badge",
            trigger: "button[name='action_member_from_badge']",
            run: "click",
        },
        {
            trigger: ".o_field_widget[name='member_source']:contains('Badge')",
        },
        {
            trigger: ".o_field_widget[name='partner_id'] input:value('Tour Member')",
        },
    ],
});
