/** @odoo-module **/

import { registry } from "@web/core/registry";

// The manager invoices March: one member's laser session becomes a draft invoice, the kiln
// session without energy is left out and listed.
registry.category("web_tour.tours").add("ows_billing_invoice_period", {
    url: "/odoo/action-open_workshop_mqtt.action_machine_session",
    steps: () => [
        {
            content: "Open the billing menu",
            trigger: ".o_menu_sections button:contains('Billing'), .o_menu_sections a:contains('Billing')",
            run: "click",
        },
        {
            trigger: ".dropdown-item:contains('Invoice Sessions')",
            run: "click",
        },
        {
            content: "From the first of March",
            trigger: ".modal .o_field_widget[name='date_from'] input",
            run: "edit 03/01/2026",
        },
        {
            content: "to the end of March",
            trigger: ".modal .o_field_widget[name='date_to'] input",
            run: "edit 03/31/2026",
        },
        {
            trigger: ".modal .o_field_widget[name='invoice_date'] input",
            run: "click",
        },
        {
            content: "One session of one member to invoice, one left out",
            trigger: ".modal .o_field_widget[name='session_count']:contains('1')",
        },
        {
            trigger: ".modal .o_field_widget[name='skipped_count']:contains('1')",
        },
        {
            content: "Create the draft invoices",
            trigger: ".modal button[name='action_invoice']",
            run: "click",
        },
        {
            content: "The kiln session is listed as left out",
            trigger: ".modal .o_field_widget[name='skip_line_ids'] td:contains('Energy unknown')",
        },
        {
            trigger: ".modal .o_ows_created_invoices .o_tag",
        },
        {
            content: "Look at the invoices",
            trigger: ".modal button[name='action_view_invoices']",
            run: "click",
        },
        {
            content: "The member's draft invoice is listed",
            trigger: "body:not(:has(.modal)) .o_list_view .o_data_row td[name='invoice_partner_display_name']:contains('Tour Member')",
            run: "click",
        },
        {
            content: "A draft with the laser line",
            trigger: ".o_field_widget[name='state'] .o_arrow_button_current:contains('Draft')",
        },
        {
            trigger: ".o_field_widget[name='invoice_line_ids'] td[name='product_id']:contains('Laser cutter time')",
        },
        {
            content: "The invoice names its session",
            trigger: "button[name='action_view_ows_sessions']:contains('1')",
        },
        {
            content: "1.5 h at 24.00",
            trigger: ".o_field_widget[name='invoice_line_ids'] td[name='price_subtotal']:contains('36.00')",
        },
    ],
});
