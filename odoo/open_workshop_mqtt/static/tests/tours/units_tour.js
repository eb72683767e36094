/** Durations and energy in the sessions list and pivot: 17 s, not 00:00; 1.55 Wh, not 0.00 kWh. */
import { registry } from "@web/core/registry";

const SHORT = ".o_data_row:contains(Units Short)";
const LONG = ".o_data_row:contains(Units Long)";

registry.category("web_tour.tours").add("ows_units", {
    steps: () => [
        { trigger: `${SHORT} td[name='duration_s']:contains(17 s)` },
        { trigger: `${SHORT} td[name='energy_wh']:contains(1.55 Wh)` },
        { trigger: `${LONG} td[name='duration_s']:contains(2:05 h)` },
        { trigger: `${LONG} td[name='working_s']:contains(12 min)` },
        { trigger: `${LONG} td[name='energy_wh']:contains(3.42 kWh)` },
        {
            content: "the totals use the same units",
            trigger: ".o_list_footer td:contains(2:05 h) ~ td:contains(3.42 kWh)",
        },
        {
            content: "so does the pivot",
            trigger: ".o_switch_view.o_pivot",
            run: "click",
        },
        { trigger: ".o_pivot .o_pivot_cell_value:contains(3.42 kWh)" },
        { trigger: ".o_pivot .o_pivot_cell_value:contains(2:05 h)" },
    ],
});
