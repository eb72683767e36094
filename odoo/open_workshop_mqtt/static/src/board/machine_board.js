/** @odoo-module **/
/**
 * The machine board: the Machines kanban, kept live by the bus.
 *
 * One BoardStore per open board holds the cards (the live state of each machine as the server
 * computed it, plus its done sessions of today) and a clock. The server pushes a machine's live
 * card on every bridge status (`ows_iot_board/live`) and names the machines whose sessions
 * changed (`ows_iot_board/sessions`), which the store then refetches. Everything that moves
 * with time (running time, "last seen", a card whose status got too old) is computed here,
 * against the server's clock, once a second; every time is formatted by the browser.
 */
import { Component, onWillStart, onWillUnmount, reactive, useState, useSubEnv } from "@odoo/owl";
import { _t } from "@web/core/l10n/translation";
import { formatDateTime } from "@web/core/l10n/dates";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { KanbanController } from "@web/views/kanban/kanban_controller";
import { kanbanView } from "@web/views/kanban/kanban_view";
import { standardWidgetProps } from "@web/views/widgets/standard_widget_props";
import { formatDuration, formatEnergy, formatPower } from "../units";

const { DateTime } = luxon;

const LIVE_KEYS = [
    "board_state",
    "detector_state",
    "online",
    "power_w",
    "last_seen",
    "session_started_at",
    "valid_until",
    "bridge_silent",
];

function parseUtc(text) {
    return text ? Date.parse(text) : null;
}

export class BoardStore {
    constructor(orm) {
        this.orm = orm;
        this.state = reactive({ cards: {}, now: Date.now(), offset: 0 });
        this.dayStart = DateTime.local().startOf("day");
        this._pending = new Set();
        this._flush = null;
    }

    /** The server's clock, as well as the browser can tell it. */
    serverNow() {
        return this.state.now + this.state.offset;
    }

    /** Load the card of `id` (batched with the other cards rendered in the same tick). */
    request(id) {
        this._pending.add(id);
        if (!this._flush) {
            this._flush = new Promise((resolve) => setTimeout(resolve, 0)).then(() => {
                const ids = [...this._pending];
                this._pending.clear();
                this._flush = null;
                return this.load(ids);
            });
        }
        return this._flush;
    }

    async load(ids) {
        if (!ids.length) {
            return;
        }
        const data = await this.orm.call("ows.iot.device", "board_data", [
            ids,
            this.dayStart.toUTC().toISO(),
        ]);
        this._setOffset(data.server_time);
        for (const [id, card] of Object.entries(data.cards)) {
            this.state.cards[id] = card;
        }
    }

    reload(ids = null) {
        const known = Object.keys(this.state.cards).map(Number);
        const wanted = ids ? ids.filter((id) => known.includes(id)) : known;
        return this.load(wanted);
    }

    applyLive({ server_time, cards }) {
        this._setOffset(server_time);
        for (const live of cards) {
            const card = this.state.cards[live.id];
            if (card) {
                for (const key of LIVE_KEYS) {
                    card[key] = live[key];
                }
            }
        }
    }

    tick() {
        this.state.now = Date.now();
        const midnight = DateTime.local().startOf("day");
        if (+midnight !== +this.dayStart) {
            this.dayStart = midnight;
            this.reload();
        }
    }

    _setOffset(serverTime) {
        const server = parseUtc(serverTime);
        if (server) {
            this.state.offset = server - Date.now();
        }
    }
}

export class MachineBoardController extends KanbanController {
    setup() {
        super.setup();
        this.board = new BoardStore(useService("orm"));
        useSubEnv({ owsBoard: this.board });
        const bus = useService("bus_service");
        const onLive = (payload) => this.board.applyLive(payload);
        const onSessions = ({ device_ids }) => this.board.reload(device_ids);
        const onReconnect = () => this.board.reload();
        bus.subscribe("ows_iot_board/live", onLive);
        bus.subscribe("ows_iot_board/sessions", onSessions);
        bus.addEventListener("reconnect", onReconnect);
        bus.start();
        const timer = setInterval(() => this.board.tick(), 1000);
        onWillUnmount(() => {
            clearInterval(timer);
            bus.unsubscribe("ows_iot_board/live", onLive);
            bus.unsubscribe("ows_iot_board/sessions", onSessions);
            bus.removeEventListener("reconnect", onReconnect);
        });
    }
}

registry.category("views").add("ows_machine_board", {
    ...kanbanView,
    Controller: MachineBoardController,
});

const STATE_LABELS = {
    working: _t("Working"),
    standby: _t("Standby"),
    idle: _t("Idle"),
    offline: _t("Offline"),
    unknown: _t("Unknown"),
};

export class MachineCard extends Component {
    static template = "open_workshop_mqtt.MachineCard";
    static props = { ...standardWidgetProps };

    setup() {
        this.board = this.env.owsBoard;
        this.state = useState(this.board.state);
        onWillStart(() => this.board.request(this.props.record.resId));
    }

    get card() {
        return this.state.cards[this.props.record.resId] || null;
    }

    get now() {
        return this.state.now + this.state.offset;
    }

    /** The server's state, unless the status it came from is too old to say anything. */
    get boardState() {
        const card = this.card;
        if (!card) {
            return "unknown";
        }
        const validUntil = parseUtc(card.valid_until);
        if (!validUntil || this.now > validUntil) {
            return "unknown";
        }
        return card.board_state;
    }

    get stateLabel() {
        const detector = this.card && this.card.detector_state;
        if (this.boardState === "idle" && detector === "starting") {
            return _t("Starting");
        }
        if (this.boardState === "standby" && detector === "stopping") {
            return _t("Stopping");
        }
        return STATE_LABELS[this.boardState];
    }

    get isLive() {
        return !["unknown", "offline"].includes(this.boardState);
    }

    get powerText() {
        const power = this.card && this.card.power_w;
        return this.isLive && power !== null && power !== undefined ? formatPower(power) : "—";
    }

    get runningSeconds() {
        const started = this.card && parseUtc(this.card.session_started_at);
        return started ? Math.max(0, (this.now - started) / 1000) : null;
    }

    get runningText() {
        return formatDuration(this.runningSeconds);
    }

    /** Done sessions started today, plus the open one when it started today. */
    get todayText() {
        const card = this.card;
        if (!card) {
            return "";
        }
        let seconds = card.today_done_s || 0;
        const started = parseUtc(card.session_started_at);
        if (started && started >= +this.board.dayStart) {
            seconds += this.runningSeconds;
        }
        return formatDuration(seconds);
    }

    get todayEnergyText() {
        const card = this.card;
        if (!card) {
            return "";
        }
        const text = formatEnergy(card.today_energy_wh || 0);
        return card.today_energy_unknown ? _t("%s + unmeasured", text) : text;
    }

    get lastSeenText() {
        const seen = this.card && parseUtc(this.card.last_seen);
        if (!seen) {
            return _t("never");
        }
        const seconds = (this.now - seen) / 1000;
        if (seconds < 3600) {
            return _t("%s ago", formatDuration(Math.max(0, seconds)));
        }
        return formatDateTime(DateTime.fromMillis(seen));
    }
}

registry.category("view_widgets").add("ows_machine_card", { component: MachineCard });
