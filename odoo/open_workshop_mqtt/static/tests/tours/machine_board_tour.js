/**
 * The machine board updates live when a bridge's status arrives: the tour posts statuses and
 * a run_stop to the REST API itself (as the bridge would, with its token, from this page), and
 * the card changes through the bus, without a reload.
 */
import { registry } from "@web/core/registry";

// The test gives the bridge this token (tests/test_tours.py).
const TOKEN = "ows-tour-token-0123456789abcdefghijklmnopqrstuvwxyz";
const DEVICE = "shellypmminig3-tour01";
const CARD = ".o_ows_card[data-machine='Tour Lathe']";

function ts(ms) {
    return new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
}

let sent = Date.now();

async function post(path, body) {
    const response = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${TOKEN}` },
        body: JSON.stringify(body),
    });
    if (response.status >= 300) {
        throw new Error(`${path} answered ${response.status}: ${await response.text()}`);
    }
}

function postStatus(state, power, sessionStartedAt) {
    sent = Math.max(Date.now(), sent + 1);
    const now = Date.now();
    return post("/ows/iot/status", {
        sent_at: ts(sent),
        bridge: {
            version: "tour",
            started_at: ts(now - 3600000),
            uptime_s: 3600,
            mqtt_connected: true,
            queue_depth: 0,
            oldest_queued_age_s: null,
            problems: [],
            warnings: [],
            config_version: null,
        },
        devices: [
            {
                device_id: DEVICE,
                state,
                online: true,
                last_seen: ts(now - 1000),
                power_w: power,
                session_id: sessionStartedAt ? "tour-session" : null,
                session_started_at: sessionStartedAt ? ts(sessionStartedAt) : null,
            },
        ],
        discovered: [],
    });
}

function localMidnight() {
    const midnight = new Date();
    midnight.setHours(0, 0, 0, 0);
    return midnight.getTime();
}

registry.category("web_tour.tours").add("ows_machine_board_live", {
    steps: () => {
        const sessionStart = Math.max(Date.now() - 90000, localMidnight() + 1000);
        return [
            {
                content: "the board shows the machine, nothing known yet",
                trigger: `${CARD}[data-board-state='unknown']`,
                run() {
                    window.__owsBoardNotReloaded = true;
                },
            },
            {
                content: "the bridge says: working, 1234.5 W, a session open for 90 s",
                trigger: `${CARD}[data-board-state='unknown']`,
                run: () => postStatus("working", 1234.5, sessionStart),
            },
            {
                content: "the card turns working without a reload",
                trigger: `${CARD}[data-board-state='working'] .o_ows_power:contains(1.23 kW)`,
            },
            {
                content: "the open session's running time is shown",
                trigger: `${CARD} .o_ows_running_value:contains(min)`,
            },
            {
                content: "the bridge says: standby at 12 W",
                trigger: `${CARD}[data-board-state='working']`,
                run: () => postStatus("standby", 12, sessionStart),
            },
            {
                trigger: `${CARD}[data-board-state='standby'] .o_ows_power:contains(12 W)`,
            },
            {
                content: "a session of 17 s and 1.55 Wh is stopped: today's totals follow",
                trigger: `${CARD}[data-board-state='standby']`,
                run: () =>
                    post("/ows/iot/event", {
                        schema_version: "v1",
                        event_uid: `tour-stop-${Date.now()}`,
                        ts: ts(Date.now()),
                        device_id: DEVICE,
                        event_type: "run_stop",
                        payload: {
                            session_id: `tour-done-${Date.now()}`,
                            reason: "normal",
                            started_at: ts(sessionStart),
                            stopped_at: ts(sessionStart + 17000),
                            duration_s: 17,
                            working_s: 17,
                            standby_s: 0,
                            energy_wh: 1.55,
                        },
                    }),
            },
            {
                trigger: `${CARD} .o_ows_today_energy:contains(1.55 Wh)`,
            },
            {
                content: "the bridge says: idle, the session is closed",
                trigger: `${CARD}[data-board-state='standby']`,
                run: () => postStatus("idle", 0.4, null),
            },
            {
                trigger: `${CARD}[data-board-state='idle']:not(:has(.o_ows_running))`,
            },
            {
                content: "all of it without reloading the page",
                trigger: `${CARD}[data-board-state='idle']`,
                run() {
                    if (!window.__owsBoardNotReloaded) {
                        throw new Error("the board page was reloaded");
                    }
                },
            },
        ];
    },
});
