/** Adopting a discovered plug: one action opens the machine pre-filled, the admin names it. */
import { registry } from "@web/core/registry";

const ROW = ".o_data_row:contains(shellyplug-s-tour01)";

registry.category("web_tour.tours").add("ows_discovered_plug_adopt", {
    steps: () => [
        {
            content: "the plug the bridge heard is listed",
            trigger: `${ROW}:contains(SHPLG-S)`,
        },
        {
            content: "adopt it",
            trigger: `${ROW} button[name='action_adopt']`,
            run: "click",
        },
        {
            content: "the new machine is pre-filled from the plug",
            trigger: ".o_form_view .o_field_widget[name='device_id'] input:value(shellyplug-s-tour01)",
        },
        {
            trigger: ".o_form_view .o_field_widget[name='mqtt_topic'] input:value(shellies/shellyplug-s-tour01/relay/0/power)",
        },
        {
            content: "with the suggested parser",
            trigger: ".o_form_view .o_field_widget[name='parser_type'] select",
            run() {
                const select = document.querySelector(
                    ".o_form_view .o_field_widget[name='parser_type'] select"
                );
                const chosen = select.selectedOptions[0]?.textContent.trim();
                if (chosen !== "Shelly Gen1") {
                    throw new Error(`parser is ${chosen}, not Shelly Gen1`);
                }
            },
        },
        {
            content: "the admin names it",
            trigger: ".o_form_view .o_field_widget[name='machine_name'] input",
            run: "edit Band Saw",
        },
        {
            trigger: ".o_form_button_save",
            run: "click",
        },
        {
            trigger: ".o_form_saved",
        },
        {
            content: "back to the list",
            trigger: ".o_breadcrumb a:contains(Discovered Plugs)",
            run: "click",
        },
        {
            content: "the adopted plug has left the list",
            trigger: ".o_list_view:not(:has(.o_data_row:contains(shellyplug-s-tour01)))",
        },
    ],
});
