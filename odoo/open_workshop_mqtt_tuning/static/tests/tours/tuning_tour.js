/** @odoo-module **/

import { registry } from "@web/core/registry";

// The admin looks at the machine's readings, sees the thresholds and applies the suggestion.
registry.category("web_tour.tours").add("ows_tuning_apply", {
    steps: () => [
        {
            trigger: ".o_notebook a:contains('Tuning')",
            run: "click",
        },
        {
            content: "The chart of the machine's own readings",
            trigger: ".o_ows_power_chart canvas",
        },
        {
            content: "Three power modes found",
            trigger: ".o_ows_modes tbody tr:nth-child(3)",
        },
        {
            content: "The current standby threshold",
            trigger: ".o_ows_thresholds tbody tr:nth-child(1) td:nth-child(2):contains('20 W')",
        },
        {
            content: "Apply the suggestion",
            trigger: ".o_ows_apply",
            run: "click",
        },
        {
            trigger: ".o_notification:contains('Suggested thresholds applied')",
        },
        {
            content: "Now the suggestion is the threshold",
            trigger: ".o_ows_thresholds tbody tr:nth-child(1) td:nth-child(2):not(:contains('20 W'))",
        },
    ],
});
