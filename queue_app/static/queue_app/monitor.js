/* The staff monitor, an operator's console: the full queue live, running transfers with
 * their workers, charts of throughput, failures and waiting time (uPlot, served from this
 * site), entries filtered by state, owner and error kind and paged, actions on one entry
 * or on every one matching the filter (each one queue change), each with an optional note
 * for the owner, and every entry's attempt history. */
"use strict";

(function () {
  const F = window.Fathomloom;
  const { el } = F;
  const config = F.readJson("client-config");
  const ZERO_ID = "00000000-0000-0000-0000-000000000000";
  const PAGE = config.page_size || 50;
  // Events after which the numbers and charts change: fetch them again (at most once a second).
  const STATS_EVENTS = new Set(["task_started", "task_completed", "task_failed", "task_retried"]);
  // Events after which the failed list may change.
  const FAILED_EVENTS = new Set(["task_failed", "task_retried", "meeting_added", "meeting_removed"]);
  const COLORS = { completed: "#15803d", failed: "#b91c1c", retrying: "#d97706", wait: "#1d4ed8" };
  let paused = false;
  let chartWindow = "hour";
  const filter = { state: "waiting", owner: "", error_kind: "" };
  let page = 0;
  let lineView = { entries: [], total: 0 }; // the page of the line on show, and how many match
  let retryingMatching = 0; // entries waiting to retry that the filter matches
  let failedView = { entries: [], total: 0 };
  let client = null;
  const known = new Map(); // entry id -> the entry as last drawn

  function adminUrl(id) {
    return config.admin_entry_url.replace(ZERO_ID, id);
  }

  function since(iso) {
    if (!iso) return "";
    const seconds = Math.max((Date.now() - Date.parse(iso)) / 1000, 0);
    return seconds < 60 ? "under a minute" : F.formatDuration(seconds).replace("about ", "");
  }

  function timeOfDay(iso) {
    return iso ? new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
  }

  function clock(seconds) {
    const s = Math.floor(seconds);
    const hms = [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60];
    return (hms[0] ? `${hms[0]}:` : "") + hms.slice(1).map((n) => String(n).padStart(2, "0")).join(":");
  }

  // --- row actions and the attempt history ---------------------------------------------------

  function actionButton(label, kind, entry) {
    return el("button", {
      type: "button",
      class: "button small",
      text: label,
      "aria-label": `${label} “${entry.title}”`,
      "data-action": kind,
      // The entry as last drawn: a row's place changes while its buttons stay.
      onclick: () => openAction(kind, known.get(entry.id) || entry),
    });
  }

  function historyButton(entry) {
    return el("button", {
      type: "button",
      class: "link-button history-toggle",
      text: "History",
      "aria-expanded": "false",
      "aria-label": `Attempt history of “${entry.title}”`,
      onclick: (event) => toggleHistory(event.currentTarget, entry),
    });
  }

  function titleCell(entry) {
    return el("td", {}, el("a", { href: adminUrl(entry.id), class: "title" }), el("div", { class: "history", hidden: true }));
  }

  async function toggleHistory(button, entry) {
    const box = button.closest("tr").querySelector(".history");
    const open = button.getAttribute("aria-expanded") === "true";
    button.setAttribute("aria-expanded", String(!open));
    box.hidden = open;
    if (open) return;
    box.replaceChildren(el("p", { class: "hint", text: "Loading the attempts…" }));
    try {
      const detail = await F.api("GET", `/api/queue/${encodeURIComponent(entry.id)}`);
      const attempts = detail.attempt_history || [];
      if (!attempts.length) {
        box.replaceChildren(el("p", { class: "hint", text: "No attempt yet." }));
        return;
      }
      box.replaceChildren(
        el(
          "ol",
          { class: "attempts" },
          ...attempts.map((a) =>
            el(
              "li",
              { class: `attempt-${a.outcome}` },
              el("strong", { text: `Attempt ${a.number}: ${a.outcome}` }),
              el("span", {
                class: "meta",
                text: ` · ${a.worker || "no worker"} · ${timeOfDay(a.started_at)}${a.finished_at ? `–${timeOfDay(a.finished_at)}` : ""}`,
              }),
              a.error ? el("span", { class: "reason", text: ` · ${a.error_kind ? `${a.error_kind}: ` : ""}${a.error}` }) : null
            )
          )
        )
      );
    } catch (failure) {
      box.replaceChildren(el("p", { class: "form-error", text: failure.message }));
    }
  }

  const dialog = document.getElementById("action-dialog");
  let pending = null; // what the dialog will do on Confirm

  function matchingNow() {
    const matching = {};
    if (filter.owner) matching.owner = filter.owner;
    if (filter.state === "failed" && filter.error_kind) matching.error_kind = filter.error_kind;
    return matching;
  }

  function describeFilter() {
    const parts = [];
    if (filter.owner) parts.push(`of ${filter.owner}`);
    if (filter.state === "failed" && filter.error_kind) parts.push(`with error kind ${filter.error_kind}`);
    return parts.join(" ");
  }

  function openAction(kind, entry) {
    // Cancelling "waiting" entries takes those waiting to retry too (shown as running).
    const n = kind === "bulk-retry" ? failedView.total : lineView.total + retryingMatching;
    const what = {
      cancel: [`Cancel “${entry && entry.title}”?`, `${entry && entry.owner}'s entry leaves the line (a running transfer stops).`],
      retry: [`Retry “${entry && entry.title}”?`, `It goes back to the end of the line.`],
      move: [`Move “${entry && entry.title}”`, `Now at place ${entry && entry.position}. Staff moves stay where put.`],
      "bulk-retry": [`Retry ${n} failed ${n === 1 ? "entry" : "entries"}?`, `Every failed entry ${describeFilter() || "(no filter: all of them)"} goes back to the line, as one change.`],
      "bulk-cancel": [`Cancel ${n} waiting ${n === 1 ? "entry" : "entries"}?`, `Every entry waiting ${describeFilter() || "(no filter: the whole line)"} is cancelled, as one change.`],
    }[kind];
    pending = { kind, entry, matching: matchingNow() };
    document.getElementById("action-title").textContent = what[0];
    document.getElementById("action-detail").textContent = what[1];
    document.getElementById("action-position-field").hidden = kind !== "move";
    document.getElementById("action-position").value = kind === "move" ? "1" : "";
    document.getElementById("action-note").value = "";
    document.getElementById("action-error").hidden = true;
    document.getElementById("action-confirm").textContent = kind.startsWith("bulk") ? `Yes, ${kind === "bulk-retry" ? "retry" : "cancel"} ${n}` : "Confirm";
    dialog.showModal();
  }

  async function runAction() {
    const { kind, entry, matching } = pending;
    const note = document.getElementById("action-note").value.trim();
    const withNote = (body) => (note ? { ...body, note } : body);
    const id = entry ? encodeURIComponent(entry.id) : null;
    if (kind === "cancel") {
      await F.api("DELETE", `/api/queue/${id}`, withNote({}));
      return `Cancelled “${entry.title}”.`;
    }
    if (kind === "retry") {
      await F.api("POST", `/api/queue/${id}/retry`, withNote({}));
      return `“${entry.title}” is back in line.`;
    }
    if (kind === "move") {
      const position = Number(document.getElementById("action-position").value);
      await F.api("POST", `/api/queue/${id}/move`, withNote({ position }));
      return `Moved “${entry.title}” to place ${position}.`;
    }
    const path = kind === "bulk-retry" ? "/api/queue/retry" : "/api/queue/cancel";
    const result = await F.api("POST", path, withNote({ matching }));
    const done = result.entries.length;
    const verb = kind === "bulk-retry" ? "Retried" : "Cancelled";
    const refused = result.refused.length ? ` (${result.refused.length} could not be: ${result.refused[0].detail})` : "";
    return `${verb} ${done} ${done === 1 ? "entry" : "entries"}${refused}.`;
  }

  document.getElementById("action-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const confirm = document.getElementById("action-confirm");
    const error = document.getElementById("action-error");
    error.hidden = true;
    confirm.disabled = true;
    try {
      const said = await runAction();
      dialog.close();
      F.notify("success", said);
      refreshFailedSoon(0);
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    } finally {
      confirm.disabled = false;
    }
  });
  document.getElementById("action-dismiss").addEventListener("click", () => dialog.close());

  // --- running transfers ----------------------------------------------------------------------

  function createRunning(entry) {
    return el(
      "tr",
      {},
      titleCell(entry),
      el("td", { class: "owner" }),
      el("td", { class: "worker mono" }),
      el("td", { class: "elapsed" }),
      el("td", {}, F.progressBar(`Transfer of “${entry.title}”`)),
      el("td", { class: "attempt" }),
      el("td", { class: "actions" }, actionButton("Cancel", "cancel", entry), historyButton(entry))
    );
  }

  function updateRunning(row, entry) {
    known.set(entry.id, entry);
    row.querySelector(".title").textContent = entry.title;
    row.querySelector(".owner").textContent = entry.owner;
    row.querySelector(".worker").textContent =
      entry.status === "retrying" ? "waiting to retry" : entry.worker || "starting";
    // Running: time since it started, ticking (tickElapsed). Waiting to retry: none.
    row.dataset.started = entry.status === "running" ? entry.started_at || "" : "";
    showElapsed(row);
    F.updateProgress(row.querySelector(".progress"), entry);
    row.querySelector(".attempt").textContent = `${entry.attempts} of ${entry.max_attempts}`;
  }

  function showElapsed(row) {
    const started = row.dataset.started;
    row.querySelector(".elapsed").textContent = started
      ? clock(Math.max((Date.now() - Date.parse(started)) / 1000, 0))
      : "";
  }

  function tickElapsed() {
    document.querySelectorAll("#running > tr").forEach(showElapsed);
  }

  // --- the line, filtered and paged --------------------------------------------------------------

  function createPlace(entry) {
    return el(
      "tr",
      {},
      el("td", { class: "place" }),
      titleCell(entry),
      el("td", { class: "owner" }),
      el("td", { class: "waiting" }),
      el(
        "td",
        { class: "actions" },
        actionButton("Move", "move", entry),
        actionButton("Cancel", "cancel", entry),
        historyButton(entry)
      )
    );
  }

  function updatePlace(row, entry) {
    row.querySelector(".place").textContent = entry.position;
    row.querySelector(".title").textContent = entry.title;
    row.querySelector(".owner").textContent = entry.owner;
    row.querySelector(".waiting").textContent = `${timeOfDay(entry.created_at)} (${since(entry.created_at)})`;
    known.set(entry.id, entry);
  }

  function holdsWholeLine(state) {
    return state.queue.filter((e) => e.position != null).length >= (state.waiting || 0);
  }

  let linePageFetch = null;
  /** The page of the line to show: from the live state when it holds the whole line, or
   * else (a window that carries only the head of a long line: protocol version 2) through
   * GET /api/queue/line. */
  function lineFromState(state) {
    const line = state.queue.filter((e) => e.position != null);
    if (holdsWholeLine(state) || (page === 0 && !filter.owner)) {
      const matching = filter.owner ? line.filter((e) => e.owner === filter.owner) : line;
      const more = holdsWholeLine(state) ? 0 : state.waiting - line.length;
      return { entries: matching.slice(page * PAGE, (page + 1) * PAGE), total: matching.length + more };
    }
    if (!linePageFetch) {
      linePageFetch = setTimeout(async () => {
        try {
          const data = await F.api("GET", `/api/queue/line?start=${page * PAGE + 1}&limit=${PAGE}`);
          lineView = { entries: data.results, total: data.waiting };
          drawEntries();
        } catch (failure) {
          showEntriesError(failure.message);
        } finally {
          linePageFetch = null;
        }
      }, 300);
    }
    return lineView;
  }

  // --- failed entries, from the server ---------------------------------------------------------

  let failedTimer = null;
  function refreshFailedSoon(delay = 1000) {
    if (filter.state !== "failed") return;
    clearTimeout(failedTimer);
    failedTimer = setTimeout(async () => {
      const params = new URLSearchParams({ offset: String(page * PAGE), limit: String(PAGE) });
      if (filter.owner) params.set("owner", filter.owner);
      if (filter.error_kind) params.set("error_kind", filter.error_kind);
      try {
        const response = await fetch(`${config.entries_url}?${params}`, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        const data = await response.json();
        if (!response.ok) throw new Error(data.detail || `The server answered ${response.status}.`);
        failedView = { entries: data.entries, total: data.total };
        document.getElementById("entries-error").hidden = true;
        drawEntries();
      } catch (failure) {
        showEntriesError(failure.message);
      }
    }, delay);
  }

  function createFailed(entry) {
    return el(
      "tr",
      {},
      titleCell(entry),
      el("td", { class: "owner" }),
      el("td", {}, el("span", { class: "kind mono" }), el("p", { class: "reason" })),
      el("td", { class: "attempts" }),
      el("td", { class: "finished" }),
      el("td", { class: "actions" }, actionButton("Retry", "retry", entry), historyButton(entry))
    );
  }

  function updateFailed(row, entry) {
    known.set(entry.id, entry);
    row.querySelector(".title").textContent = entry.title;
    row.querySelector(".owner").textContent = entry.owner;
    row.querySelector(".kind").textContent = entry.error_kind || "no kind";
    row.querySelector(".reason").textContent = entry.error || "No reason recorded.";
    row.querySelector(".attempts").textContent = String(entry.attempts);
    row.querySelector(".finished").textContent = entry.finished_at ? new Date(entry.finished_at).toLocaleString() : "";
  }

  function showEntriesError(message) {
    const error = document.getElementById("entries-error");
    error.textContent = message;
    error.hidden = false;
  }

  // --- drawing ---------------------------------------------------------------------------------

  function drawEntries() {
    const waiting = filter.state === "waiting";
    document.getElementById("waiting-view").hidden = !waiting;
    document.getElementById("failed-view").hidden = waiting;
    document.getElementById("filter-kind").disabled = waiting;
    document.getElementById("bulk-cancel").hidden = !waiting;
    document.getElementById("bulk-retry").hidden = waiting;
    const view = waiting ? lineView : failedView;
    if (waiting) {
      F.renderKeyed(document.getElementById("line"), view.entries, (e) => e.id, createPlace, updatePlace);
      document.getElementById("line-empty").hidden = view.entries.length > 0;
      document.getElementById("line-empty").textContent = filter.owner ? `Nothing of ${filter.owner} is waiting.` : "Nobody is waiting.";
    } else {
      F.renderKeyed(document.getElementById("failed"), view.entries, (e) => e.id, createFailed, updateFailed);
      document.getElementById("failed-empty").hidden = view.entries.length > 0;
    }
    const pages = Math.max(Math.ceil(view.total / PAGE), 1);
    if (page >= pages) {
      page = pages - 1;
      if (waiting && client && client.state) render(client.state);
      else refreshFailedSoon(0);
      return;
    }
    const label = waiting ? "waiting" : "failed";
    document.getElementById("filter-count").textContent = `${view.total} ${label} ${describeFilter()}`.trim() + ".";
    document.getElementById("bulk-cancel").disabled = view.total + retryingMatching === 0;
    document.getElementById("bulk-retry").disabled = view.total === 0;
    document.getElementById("page-info").textContent = `Page ${page + 1} of ${pages}`;
    document.getElementById("page-prev").disabled = page === 0;
    document.getElementById("page-next").disabled = page + 1 >= pages;
  }

  function render(state) {
    const running = state.queue.filter(
      (e) => e.position == null && (!filter.owner || e.owner === filter.owner)
    );
    F.renderKeyed(document.getElementById("running"), running, (e) => e.id, createRunning, updateRunning);
    document.getElementById("running-empty").hidden = running.length > 0;
    retryingMatching = running.filter((e) => e.status === "retrying").length;
    lineView = lineFromState(state);
    drawEntries();
    const inLine = state.queue.filter((e) => e.position != null).length;
    document.getElementById("stat-line").textContent = String(
      holdsWholeLine(state) ? inLine : inLine + state.queue_length - state.queue.length
    );
    paused = state.paused;
    F.showPaused(paused);
    document.getElementById("queue-state").textContent = paused
      ? "Paused: no new transfers start; running ones finish."
      : "Running: transfers start as workers are free.";
    const toggle = document.getElementById("pause-switch");
    toggle.textContent = paused ? "Resume the queue" : "Pause the queue";
    toggle.dataset.paused = String(paused);
  }

  // --- the charts ------------------------------------------------------------------------------

  const charts = {};

  function chartSpec(id, data) {
    const bars = window.uPlot.paths.bars({ size: [0.8, 24] });
    const count = (label, stroke) => ({ label, stroke, fill: `${stroke}cc`, paths: bars, points: { show: false } });
    if (id === "chart-throughput") return { series: [count("Completed", COLORS.completed)], data: [data.completed] };
    if (id === "chart-failures") {
      return {
        series: [count("Failed for good", COLORS.failed), count("Failed, will retry", COLORS.retrying)],
        data: [data.failed, data.retrying],
      };
    }
    return {
      series: [{ label: "Mean wait (s)", stroke: COLORS.wait, width: 2, spanGaps: false, points: { show: true, size: 6, fill: COLORS.wait } }],
      data: [data.wait_seconds],
    };
  }

  function chartTotal(id, data) {
    const sum = (values) => values.reduce((total, v) => total + (v || 0), 0);
    const range = data.window === "hour" ? "in the last hour" : "in the last day";
    if (id === "chart-throughput") return [sum(data.completed), `${sum(data.completed)} completed ${range}`];
    if (id === "chart-failures") {
      return [sum(data.failed) + sum(data.retrying), `${sum(data.failed)} failed for good, ${sum(data.retrying)} will retry, ${range}`];
    }
    const waits = data.wait_seconds.filter((v) => v != null);
    if (!waits.length) return [0, `No transfer started ${range}`];
    const longest = Math.max(...waits);
    return [waits.length, `Longest mean wait ${range}: ${spelled(longest)}`];
  }

  function spelled(seconds) {
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ""}`;
    return `${Math.floor(s / 3600)} h${Math.floor(s / 60) % 60 ? ` ${Math.floor(s / 60) % 60} min` : ""}`;
  }

  function waitLabel(seconds) {
    if (seconds >= 3600) return `${+(seconds / 3600).toFixed(1)}h`;
    if (seconds >= 60) return `${+(seconds / 60).toFixed(1)}m`;
    return `${+seconds.toFixed(1)}s`;
  }

  function drawCharts(data) {
    if (!data || !window.uPlot) return;
    document.getElementById("charts-range").textContent =
      data.window === "hour" ? "From the attempt history, by the minute." : "From the attempt history, by the quarter hour.";
    for (const figure of document.querySelectorAll(".chart")) {
      const spec = chartSpec(figure.id, data);
      const [total, text] = chartTotal(figure.id, data);
      figure.dataset.total = String(total);
      figure.querySelector(".chart-total").textContent = text;
      const plot = figure.querySelector(".plot");
      const width = Math.max(plot.clientWidth, 240);
      const wait = figure.id === "chart-wait";
      const opts = {
        width,
        height: 150,
        legend: { show: false }, // the caption's colour keys name the series
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max || 0, 1)] } },
        axes: [{}, { size: 48, values: (u, ticks) => ticks.map((v) => (wait ? waitLabel(v) : Number.isInteger(v) ? String(v) : "")) }],
        series: [{}, ...spec.series],
      };
      if (charts[figure.id]) charts[figure.id].destroy();
      charts[figure.id] = new window.uPlot(opts, [data.times, ...spec.data], plot);
    }
  }

  window.addEventListener("resize", () => {
    for (const [id, chart] of Object.entries(charts)) {
      const plot = document.getElementById(id).querySelector(".plot");
      chart.setSize({ width: Math.max(plot.clientWidth, 240), height: 150 });
    }
  });

  for (const button of document.querySelectorAll("[data-window]")) {
    button.addEventListener("click", () => {
      chartWindow = button.dataset.window;
      for (const other of document.querySelectorAll("[data-window]")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
      refreshStatsSoon(0);
    });
  }

  // --- the numbers of the hour, and failures ---------------------------------------------------

  function fillErrorKinds(kinds) {
    const select = document.getElementById("filter-kind");
    const have = new Set(Array.from(select.options).map((o) => o.value));
    for (const kind of kinds || []) if (!have.has(kind)) select.append(el("option", { value: kind, text: kind }));
  }

  function renderMonitor(data) {
    const { stats, failures } = data;
    document.getElementById("stat-completed").textContent = String(stats.completed);
    document.getElementById("stat-failed").textContent = String(stats.failed);
    document.getElementById("stat-wait").textContent =
      stats.mean_wait_seconds == null ? "no transfers" : F.formatDuration(stats.mean_wait_seconds).replace("about ", "");
    F.renderKeyed(
      document.getElementById("failures"),
      failures,
      (f) => f.id,
      () => el("li", { class: "failure" }, el("a", { class: "title" }), el("span", { class: "meta" }), el("p", { class: "reason" })),
      (node, f) => {
        const link = node.querySelector(".title");
        link.href = f.admin_url;
        link.textContent = f.title;
        node.querySelector(".meta").textContent = ` · ${f.owner} · attempt ${f.attempts} · ${new Date(f.finished_at).toLocaleTimeString()}`;
        node.querySelector(".reason").textContent = f.error || "No reason recorded.";
      }
    );
    document.getElementById("failures-empty").hidden = failures.length > 0;
    fillErrorKinds(data.error_kinds);
    drawCharts(data.chart);
  }

  let statsTimer = null;
  function refreshStatsSoon(delay = 1000) {
    if (statsTimer && delay) return;
    clearTimeout(statsTimer);
    statsTimer = setTimeout(async () => {
      statsTimer = null;
      try {
        const response = await fetch(`${config.stats_url}?window=${chartWindow}`, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (response.ok) renderMonitor(await response.json());
      } catch (error) {
        // The socket shows the connection state; the next event or minute tries again.
      }
    }, delay);
  }

  // --- filters and pages -----------------------------------------------------------------------

  function applyFilter() {
    filter.state = document.getElementById("filter-state").value;
    filter.owner = document.getElementById("filter-owner").value.trim();
    filter.error_kind = document.getElementById("filter-kind").value;
    page = 0;
    if (filter.state === "failed") {
      failedView = { entries: [], total: 0 };
      refreshFailedSoon(0);
    }
    if (client && client.state) render(client.state);
  }

  const filters = document.getElementById("filters");
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilter();
  });
  document.getElementById("filter-state").addEventListener("change", applyFilter);
  document.getElementById("filter-kind").addEventListener("change", applyFilter);
  let ownerTimer = null;
  document.getElementById("filter-owner").addEventListener("input", () => {
    clearTimeout(ownerTimer);
    ownerTimer = setTimeout(applyFilter, 300);
  });
  document.getElementById("bulk-retry").addEventListener("click", () => openAction("bulk-retry", null));
  document.getElementById("bulk-cancel").addEventListener("click", () => openAction("bulk-cancel", null));

  function turnPage(by) {
    page = Math.max(page + by, 0);
    if (filter.state === "failed") refreshFailedSoon(0);
    else if (client && client.state) render(client.state);
  }
  document.getElementById("page-prev").addEventListener("click", () => turnPage(-1));
  document.getElementById("page-next").addEventListener("click", () => turnPage(1));

  document.getElementById("pause-switch").addEventListener("click", async (event) => {
    const toggle = event.currentTarget;
    const error = document.getElementById("pause-error");
    error.hidden = true;
    toggle.disabled = true;
    try {
      await F.api("POST", paused ? "/api/queue/resume" : "/api/queue/pause");
      // The label follows the queue_paused / queue_resumed event, like everyone else's page.
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    } finally {
      toggle.disabled = false;
    }
  });

  renderMonitor(F.readJson("monitor-data"));
  client = new F.QueueClient({
    initial: F.readJson("initial-snapshot"),
    onState: (state, message) => {
      render(state);
      if (message && message.type === "QueueUpdate") {
        if (STATS_EVENTS.has(message.update_type)) refreshStatsSoon();
        if (FAILED_EVENTS.has(message.update_type)) refreshFailedSoon();
      }
    },
    onConnection: F.showConnection,
  });
  client.start();
  setInterval(tickElapsed, 1000);
  setInterval(() => {
    if (client.state) render(client.state);
    refreshStatsSoon();
  }, 60000);
  window.fathomloomClient = client;
})();
