/**
 * The bridges list shows its headers whole, and the token dialog shows a new token once.
 */
import { registry } from "@web/core/registry";

function truncatedHeaders() {
    const cut = [];
    for (const th of document.querySelectorAll(".o_list_table thead th[data-name]")) {
        for (const el of [th, ...th.querySelectorAll("span, div")]) {
            if (el.scrollWidth > el.clientWidth + 1) {
                cut.push(th.textContent.trim());
                break;
            }
        }
    }
    return cut;
}

registry.category("web_tour.tours").add("ows_bridge_token", {
    steps: () => [
        {
            content: "the bridges list",
            trigger: ".o_list_table thead th[data-name='device_count']",
        },
        {
            content: "no column header is cut off",
            trigger: ".o_data_row:contains(Tour Bridge)",
            run() {
                const cut = truncatedHeaders();
                if (cut.length) {
                    throw new Error(`truncated list headers: ${cut.join(", ")}`);
                }
            },
        },
        {
            trigger: ".o_data_row:contains(Tour Bridge) td[name='name']",
            run: "click",
        },
        {
            content: "generate the token",
            trigger: ".o_form_view button[name='action_generate_token']:contains(Generate Token)",
            run: "click",
        },
        {
            content: "the dialog shows it once, to copy",
            trigger: ".modal .o_field_CopyClipboardChar span, .modal .o_field_widget[name='token']",
            run() {
                const field = document.querySelector(".modal .o_field_widget[name='token']");
                const token = field.textContent.trim();
                if (token.length < 40) {
                    throw new Error(`no token in the dialog: ${JSON.stringify(token)}`);
                }
                window.__owsTourToken = token;
            },
        },
        {
            trigger: ".modal .o_field_widget[name='token'] .o_clipboard_button",
        },
        {
            trigger: ".modal button[name='action_done']",
            run: "click",
        },
        {
            content: "the form shows which token it is, never the token itself",
            trigger: "body:not(:has(.modal)) .o_form_view .o_field_widget[name='token_prefix']",
            run() {
                const prefix = document
                    .querySelector(".o_form_view .o_field_widget[name='token_prefix']")
                    .textContent.trim();
                if (!prefix || !window.__owsTourToken.startsWith(prefix)) {
                    throw new Error(`prefix ${prefix} does not start the shown token`);
                }
                if (document.body.textContent.includes(window.__owsTourToken)) {
                    throw new Error("the token is still on the page");
                }
            },
        },
        {
            trigger: ".o_form_view button[name='action_generate_token']:contains(Rotate Token)",
        },
    ],
});
