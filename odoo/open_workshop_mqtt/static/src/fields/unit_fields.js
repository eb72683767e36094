/** @odoo-module **/
import { Component, xml } from "@odoo/owl";
import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { standardFieldProps } from "@web/views/fields/standard_field_props";
import { formatDuration, formatEnergy, formatEnergyKwh, formatHours } from "../units";

/** A read-only float shown in the addon's units (see units.js). */
export class OwsUnitField extends Component {
    static template = xml`<span t-att-class="'o_ows_unit'" t-esc="text"/>`;
    static props = { ...standardFieldProps, format: Function };

    get text() {
        return this.props.format(this.props.record.data[this.props.name]);
    }
}

function unitField(displayName, format) {
    return {
        component: OwsUnitField,
        displayName,
        supportedTypes: ["float"],
        listViewWidth: 90,
        extractProps: () => ({ format }),
    };
}

const fields = registry.category("fields");
fields.add("ows_duration", unitField(_t("Duration (from seconds)"), formatDuration));
fields.add("ows_hours", unitField(_t("Duration (from hours)"), formatHours));
fields.add("ows_energy", unitField(_t("Energy (from Wh)"), formatEnergy));
fields.add("ows_energy_kwh", unitField(_t("Energy (from kWh)"), formatEnergyKwh));
