/** @odoo-module **/
/**
 * One way to show durations, energy and power everywhere in the addon (lists, forms, pivot,
 * the machine board), formatted in the browser with the user's number format:
 *
 * - durations: "17 s" under a minute, "12 min" under an hour, else hours:minutes "2:05 h";
 * - energy: Wh below 1 kWh ("1.55 Wh", "820 Wh"), else kWh ("3.42 kWh");
 * - power: W below 1 kW ("3.2 W", "120 W"), else kW ("1.25 kW").
 *
 * The registered formatters (`ows_duration` for seconds, `ows_hours` for hours, `ows_energy`
 * for Wh, `ows_energy_kwh` for kWh) are also what list totals and pivot cells use.
 */
import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { formatFloat } from "@web/views/fields/formatters";

function isMissing(value) {
    return value === false || value === null || value === undefined || Number.isNaN(value);
}

function number(value, decimals) {
    return formatFloat(value, { digits: [false, decimals] });
}

export function formatDuration(seconds) {
    if (isMissing(seconds)) {
        return "";
    }
    const total = Math.max(0, Math.round(seconds));
    if (total < 60) {
        return _t("%s s", total);
    }
    const minutes = Math.floor(total / 60);
    if (minutes < 60) {
        return _t("%s min", minutes);
    }
    const hours = Math.floor(minutes / 60);
    const rest = String(minutes % 60).padStart(2, "0");
    return _t("%(hours)s:%(minutes)s h", { hours, minutes: rest });
}

export function formatHours(hours) {
    return isMissing(hours) ? "" : formatDuration(hours * 3600);
}

export function formatEnergy(wh) {
    if (isMissing(wh)) {
        return "";
    }
    const abs = Math.abs(wh);
    if (abs < 1000) {
        const decimals = abs === 0 || abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
        return _t("%s Wh", number(wh, decimals));
    }
    return _t("%s kWh", number(wh / 1000, abs >= 100000 ? 1 : 2));
}

export function formatEnergyKwh(kwh) {
    return isMissing(kwh) ? "" : formatEnergy(kwh * 1000);
}

export function formatPower(w) {
    if (isMissing(w)) {
        return "";
    }
    const abs = Math.abs(w);
    if (abs < 1000) {
        return _t("%s W", number(w, abs < 10 && abs !== 0 ? 1 : 0));
    }
    return _t("%s kW", number(w / 1000, 2));
}

const formatters = registry.category("formatters");
formatters.add("ows_duration", formatDuration);
formatters.add("ows_hours", formatHours);
formatters.add("ows_energy", formatEnergy);
formatters.add("ows_energy_kwh", formatEnergyKwh);
