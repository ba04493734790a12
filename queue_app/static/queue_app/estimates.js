/* Waiting times on the pages (docs/estimates.md): each entry's estimate from the server
 * (the snapshot's eta_seconds, then GET /api/estimates after the line changes) becomes a
 * moment, counted down every second between events. Also the clocks that tick without
 * events: how long a transfer has run, when a retry is next tried.
 *
 * Replaces Fathomloom.etaSeconds (a fixed-mean formula) for the pages that load it, so
 * every page draws the same estimates. */
"use strict";

(function () {
  const F = window.Fathomloom;
  // Asked again after the line changes, but at most every 5 s per page (a busy line has
  // events every second; the countdown runs on meanwhile), and only while the viewer has
  // an entry that is not finished: nobody else's estimates are sent anyway.
  const REFRESH_AFTER_EVENT_MS = 1500;
  const MIN_REFRESH_GAP_MS = 5000;
  const REFRESH_EVERY_MS = 30000;
  // Events after which waiting times change; progress ticks do not.
  const LINE_CHANGES = new Set([
    "meeting_added",
    "meeting_removed",
    "position_updated",
    "queue_cleared",
    "queue_paused",
    "queue_resumed",
    "task_started",
    "task_completed",
    "task_failed",
    "task_retried",
  ]);

  const doneAt = new Map(); // entry id -> ms since the epoch when it should be done
  let paused = false;
  let reason = "";
  let lastFetch = 0;
  let timer = null;

  function take(entries, computedAt) {
    const base = computedAt ? Date.parse(computedAt) : Date.now();
    // The server's clock and ours may differ: count from now, not from its timestamp.
    const skew = Number.isFinite(base) ? Date.now() - base : 0;
    for (const entry of entries) {
      if (entry.eta_seconds == null) doneAt.delete(entry.id);
      else doneAt.set(entry.id, base + skew + entry.eta_seconds * 1000);
    }
  }

  const snapshot = F.readJson("initial-snapshot");
  if (snapshot) {
    paused = Boolean(snapshot.paused);
    take(snapshot.queue.filter((e) => "eta_seconds" in e), null);
  }

  async function refresh() {
    lastFetch = Date.now();
    try {
      const body = await F.api("GET", "/api/estimates");
      paused = body.paused;
      reason = body.reason;
      const note = document.getElementById("pause-note");
      if (note) note.textContent = body.pause_note ? `Staff's note: ${body.pause_note}` : "";
      doneAt.clear();
      take(body.entries, null);
      document.dispatchEvent(new CustomEvent("fathomloom:estimates"));
    } catch (error) {
      /* keep counting down what we have; the next event or tick asks again */
    }
  }

  function haveActive() {
    const client = window.fathomloomClient;
    if (!client || !client.state) return true;
    return client.state.queue.some((entry) => entry.mine);
  }

  function scheduleRefresh(always) {
    // One pending ask at a time: events that keep coming must not keep putting it off.
    if (timer || !(always || haveActive())) return;
    const wait = Math.max(REFRESH_AFTER_EVENT_MS, lastFetch + MIN_REFRESH_GAP_MS - Date.now());
    timer = setTimeout(() => {
      timer = null;
      refresh();
    }, wait);
  }

  window.addEventListener("fathomloom:message", (event) => {
    const message = event.detail;
    if (!message) return;
    if (message.type === "QueueSnapshot") {
      paused = Boolean(message.paused);
      scheduleRefresh();
    } else if (message.type === "QueueUpdate" && LINE_CHANGES.has(message.update_type)) {
      if (message.paused != null) paused = Boolean(message.paused);
      // A pause or resume changes the banner's note for everyone, waiting or not.
      scheduleRefresh(message.update_type === "queue_paused" || message.update_type === "queue_resumed");
    }
  });
  setInterval(() => document.visibilityState === "visible" && haveActive() && refresh(), REFRESH_EVERY_MS);
  refresh();

  /** Seconds until `entry` should be done, or null (paused, no history, unknown). */
  function etaSeconds(entry) {
    if (paused && entry.status !== "running") return null;
    const at = doneAt.get(entry.id);
    if (at == null) return null;
    return Math.max(Math.round((at - Date.now()) / 1000), 0);
  }

  /** Why an entry has no estimate, in words for the page; "" when it has one. */
  function noEstimateText(entry) {
    if (entry.status === "running") return "";
    if (paused) return "paused: no estimate until staff resume the queue";
    if (reason === "no_history") return "no estimate yet (no transfer has finished)";
    return "";
  }

  /** A duration that ticks: "42 s", "3 min 05 s", "1 h 04 min". */
  function clock(seconds) {
    const s = Math.max(Math.round(seconds), 0);
    if (s < 60) return `${s} s`;
    const minutes = Math.floor(s / 60);
    if (minutes < 60) return `${minutes} min ${String(s % 60).padStart(2, "0")} s`;
    return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
  }

  function secondsSince(iso) {
    return iso ? Math.max((Date.now() - Date.parse(iso)) / 1000, 0) : null;
  }

  function secondsUntil(iso) {
    return iso ? Math.max((Date.parse(iso) - Date.now()) / 1000, 0) : null;
  }

  /** "done in 3 min 05 s" or why there is none, for an entry. */
  function etaText(entry) {
    const eta = etaSeconds(entry);
    if (eta == null) return noEstimateText(entry);
    if (eta === 0) return entry.status === "running" ? "about to finish" : "due now";
    return `done in ${clock(eta)}`;
  }

  F.etaSeconds = etaSeconds;
  F.estimates = { etaSeconds, etaText, noEstimateText, clock, secondsSince, secondsUntil, refresh, isPaused: () => paused };
})();
