/* The staff monitor: the full queue live, running transfers with their workers, failures,
 * throughput and mean wait over the last hour, and the pause switch. */
"use strict";

(function () {
  const F = window.Fathomloom;
  const { el } = F;
  const config = F.readJson("client-config");
  const ZERO_ID = "00000000-0000-0000-0000-000000000000";
  // Events after which the hour's numbers change: fetch them again (at most once a second).
  const STATS_EVENTS = new Set(["task_started", "task_completed", "task_failed", "task_retried"]);
  let paused = false;

  function adminUrl(id) {
    return config.admin_entry_url.replace(ZERO_ID, id);
  }

  function since(iso) {
    if (!iso) return "";
    const seconds = Math.max((Date.now() - Date.parse(iso)) / 1000, 0);
    return seconds < 60 ? "under a minute" : F.formatDuration(seconds).replace("about ", "");
  }

  function createRunning(entry) {
    return el(
      "tr",
      {},
      el("td", {}, el("a", { href: adminUrl(entry.id), class: "title" })),
      el("td", { class: "owner" }),
      el("td", { class: "worker mono" }),
      el("td", { class: "elapsed" }),
      el("td", {}, F.progressBar(`Transfer of “${entry.title}”`)),
      el("td", { class: "attempt" })
    );
  }

  function updateRunning(row, entry) {
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

  function clock(seconds) {
    const s = Math.floor(seconds);
    const hms = [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60];
    return (hms[0] ? `${hms[0]}:` : "") + hms.slice(1).map((n) => String(n).padStart(2, "0")).join(":");
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

  function waitingSince(iso) {
    if (!iso) return "";
    const at = new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return `${at} (${since(iso)})`;
  }

  function createPlace(entry) {
    return el(
      "tr",
      {},
      el("td", { class: "place" }),
      el("td", { class: "title" }),
      el("td", { class: "owner" }),
      el("td", { class: "waiting" }),
      el("td", {}, el("a", { href: adminUrl(entry.id), text: "Open in admin" }))
    );
  }

  function updatePlace(row, entry) {
    row.querySelector(".place").textContent = entry.position;
    row.querySelector(".title").textContent = entry.title;
    row.querySelector(".owner").textContent = entry.owner;
    row.querySelector(".waiting").textContent = waitingSince(entry.created_at);
  }

  function render(state) {
    const running = state.queue.filter((e) => e.position == null);
    const line = state.queue.filter((e) => e.position != null);
    F.renderKeyed(document.getElementById("running"), running, (e) => e.id, createRunning, updateRunning);
    F.renderKeyed(document.getElementById("line"), line, (e) => e.id, createPlace, updatePlace);
    document.getElementById("running-empty").hidden = running.length > 0;
    document.getElementById("line-empty").hidden = line.length > 0;
    document.getElementById("stat-line").textContent = String(line.length);
    paused = state.paused;
    F.showPaused(paused);
    document.getElementById("queue-state").textContent = paused
      ? "Paused: no new transfers start; running ones finish."
      : "Running: transfers start as workers are free.";
    const toggle = document.getElementById("pause-switch");
    toggle.textContent = paused ? "Resume the queue" : "Pause the queue";
    toggle.dataset.paused = String(paused);
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
  }

  let statsTimer = null;
  function refreshStatsSoon() {
    if (statsTimer) return;
    statsTimer = setTimeout(async () => {
      statsTimer = null;
      try {
        const response = await fetch(config.stats_url, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (response.ok) renderMonitor(await response.json());
      } catch (error) {
        // The socket shows the connection state; the next event or minute tries again.
      }
    }, 1000);
  }

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
  const client = new F.QueueClient({
    initial: F.readJson("initial-snapshot"),
    onState: (state, message) => {
      render(state);
      if (message && message.type === "QueueUpdate" && STATS_EVENTS.has(message.update_type)) refreshStatsSoon();
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
