import { loadBundle } from "@web/core/assets";
import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { sprintf } from "@web/core/utils/strings";
import { useService } from "@web/core/utils/hooks";
import { standardWidgetProps } from "@web/views/widgets/standard_widget_props";
import {
    Component,
    onWillStart,
    onWillUpdateProps,
    status,
    useEffect,
    useRef,
    useState,
} from "@odoo/owl";

const { DateTime } = luxon;

/**
 * The machine's recent power readings (forwarded power_measurement events) with the
 * current thresholds (solid) and the suggested ones (dashed) drawn across, the power modes
 * found, and a button that applies the suggestion (computed again on the server).
 */
export class PowerChart extends Component {
    static template = "open_workshop_mqtt_tuning.PowerChart";
    static props = { ...standardWidgetProps };

    setup() {
        this.orm = useService("orm");
        this.notification = useService("notification");
        this.canvasRef = useRef("canvas");
        this.state = useState({ data: null, logScale: true });
        this.chart = null;
        onWillStart(async () => {
            await loadBundle("web.chartjs_lib");
            await this.load();
        });
        onWillUpdateProps(async () => await this.load());
        useEffect(
            () => {
                this.renderChart();
                return () => this.chart?.destroy();
            },
            () => [this.state.data, this.state.logScale]
        );
    }

    async load() {
        // The form may drop this widget while Chart.js is still loading (a re-render after a
        // save): the orm of a destroyed component refuses calls, and nothing is to be shown.
        if (status(this) === "destroyed") {
            return;
        }
        const id = this.props.record.resId;
        this.state.data = id
            ? await this.orm.call("ows.iot.device", "get_tuning_data", [[id]])
            : null;
    }

    get suggestion() {
        const s = this.state.data?.suggestion;
        return s && "standby_threshold_w" in s ? s : null;
    }

    get reason() {
        const s = this.state.data?.suggestion;
        const reasons = {
            too_few: _t("Too few readings for a suggestion: let the bridge forward measurements (FORWARD_MEASUREMENTS=true) while the machine is off, idle and working."),
            one_mode: _t("The readings show one power level only: record the machine off, idle and working."),
            too_close: _t("The power modes are too close together to separate."),
        };
        return s && !this.suggestion ? reasons[s.reason] : "";
    }

    get summary() {
        const data = this.state.data;
        return sprintf(_t("%(count)s readings of the last %(days)s days"), {
            count: data.points.length,
            days: data.days,
        });
    }

    get noReadings() {
        return sprintf(
            _t("No power readings of the last %(days)s days. The chart uses the readings the bridge forwards as power_measurement events: run it with FORWARD_MEASUREMENTS=true through a day of normal use."),
            { days: this.state.data ? this.state.data.days : 7 }
        );
    }

    formatW(value) {
        return `${Number(value).toLocaleString(undefined, { maximumFractionDigits: 1 })} W`;
    }

    formatShare(value) {
        return `${Math.round(value * 100)} %`;
    }

    line(value, label, color, dash) {
        const points = this.state.data.points;
        const first = points[0][0];
        const last = points[points.length - 1][0];
        return {
            label,
            data: [
                { x: DateTime.fromSQL(first, { zone: "utc" }).toMillis(), y: value },
                { x: DateTime.fromSQL(last, { zone: "utc" }).toMillis(), y: value },
            ],
            borderColor: color,
            borderDash: dash,
            borderWidth: 2,
            pointRadius: 0,
            fill: false,
        };
    }

    renderChart() {
        this.chart?.destroy();
        this.chart = null;
        const data = this.state.data;
        if (!data || !data.points.length || !this.canvasRef.el) {
            return;
        }
        const floor = 0.1; // a log scale cannot show 0 W
        const datasets = [
            {
                label: _t("Power"),
                data: data.points.map(([ts, w]) => ({
                    x: DateTime.fromSQL(ts, { zone: "utc" }).toMillis(),
                    y: this.state.logScale ? Math.max(w, floor) : w,
                })),
                borderColor: "#1f77b4",
                backgroundColor: "#1f77b4",
                borderWidth: 1,
                pointRadius: 1,
                stepped: true,
            },
            this.line(data.standby_threshold_w || floor, _t("Standby threshold"), "#ff7f0e", []),
            this.line(data.working_threshold_w, _t("Working threshold"), "#d62728", []),
        ];
        if (this.suggestion) {
            datasets.push(
                this.line(this.suggestion.standby_threshold_w, _t("Suggested standby"), "#ff7f0e", [6, 4]),
                this.line(this.suggestion.working_threshold_w, _t("Suggested working"), "#d62728", [6, 4])
            );
        }
        this.chart = new Chart(this.canvasRef.el, {
            type: "line",
            data: { datasets },
            options: {
                animation: false,
                maintainAspectRatio: false,
                parsing: false,
                scales: {
                    x: {
                        type: "time",
                        // 24-hour times, as the rest of Odoo shows them (luxon tokens)
                        time: {
                            tooltipFormat: "yyyy-MM-dd HH:mm:ss",
                            displayFormats: {
                                second: "HH:mm:ss",
                                minute: "HH:mm",
                                hour: "HH:mm",
                                day: "MMM d",
                            },
                        },
                        ticks: { maxTicksLimit: 8 },
                    },
                    y: {
                        type: this.state.logScale ? "logarithmic" : "linear",
                        title: { display: true, text: "W" },
                    },
                },
                plugins: { legend: { position: "bottom" } },
            },
        });
    }

    toggleScale() {
        this.state.logScale = !this.state.logScale;
    }

    async apply() {
        await this.orm.call("ows.iot.device", "action_apply_tuning_suggestion", [
            [this.props.record.resId],
        ]);
        await this.props.record.load();
        await this.load();
        this.notification.add(_t("Suggested thresholds applied."), { type: "success" });
    }
}

registry.category("view_widgets").add("ows_power_chart", { component: PowerChart });
