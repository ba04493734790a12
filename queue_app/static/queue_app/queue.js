/* The queue page: the head of the line and mine, live. Mine in full (position, estimate
 * counting down, elapsed time, next try, progress, cancel); everyone else's as anonymous
 * places, since that is all the server sends about them. Estimates come from estimates.js. */
"use strict";

(function () {
  const F = window.Fathomloom;
  const { el } = F;
  const E = F.estimates;
  const running = document.getElementById("running");
  const line = document.getElementById("line");

  function cancelButton(entry) {
    return el("button", {
      type: "button",
      class: "button small",
      "data-action": "cancel",
      "aria-label": `Cancel “${entry.title}”`,
      text: "Cancel",
    });
  }

  function createRunning(entry) {
    const node = el("li", { class: entry.mine ? "entry mine" : "entry" });
    if (entry.title !== undefined) {
      node.append(
        el("span", { class: "entry-title" }),
        el("span", { class: "entry-meta" }),
        F.progressBar(`Transfer of “${entry.title}”`)
      );
      if (entry.mine) node.append(cancelButton(entry));
    } else {
      node.append(el("span", { class: "entry-title anonymous", text: "Another person's transfer" }));
    }
    return node;
  }

  function runningText(entry) {
    const who = entry.mine ? "Yours" : entry.owner;
    if (entry.status === "retrying") {
      const wait = E.secondsUntil(entry.next_attempt_at);
      const next = wait == null ? "" : wait > 0 ? `next try in ${E.clock(wait)}` : "next try any moment";
      return [who, `attempt ${entry.attempts} failed: ${entry.last_error || "a temporary error"}`, next]
        .filter(Boolean)
        .join(" · ");
    }
    const elapsed = E.secondsSince(entry.started_at);
    return [who, elapsed != null && `running for ${E.clock(elapsed)}`, E.etaText(entry)].filter(Boolean).join(" · ");
  }

  function updateRunning(node, entry) {
    node.dataset.status = entry.status;
    if (entry.title === undefined) {
      node.querySelector(".entry-title").textContent =
        entry.status === "retrying" ? "Another person's transfer, waiting to retry" : "Another person's transfer";
      return;
    }
    node.querySelector(".entry-title").textContent = entry.title;
    node.querySelector(".entry-meta").textContent = runningText(entry);
    const progress = node.querySelector(".progress");
    // Waiting to retry is not transferring: no bar at 0%.
    progress.hidden = entry.status === "retrying";
    if (!progress.hidden) F.updateProgress(progress, entry);
  }

  function createPlace(entry) {
    const node = el("li", { class: entry.mine ? "entry mine" : "entry" });
    node.append(el("span", { class: "place" }));
    if (entry.title !== undefined) {
      node.append(el("span", { class: "entry-title" }), el("span", { class: "entry-meta" }));
      if (entry.mine) node.append(cancelButton(entry));
    } else {
      node.append(el("span", { class: "entry-title anonymous", text: "Someone else's meeting" }));
    }
    return node;
  }

  function updatePlace(node, entry) {
    node.dataset.status = entry.status;
    node.querySelector(".place").textContent = `Place ${entry.position}`;
    if (entry.title === undefined) return;
    node.querySelector(".entry-title").textContent = entry.title;
    const who = entry.mine ? "Yours" : entry.owner;
    node.querySelector(".entry-meta").textContent = [who, E.etaText(entry)].filter(Boolean).join(" · ");
  }

  /** "places 1-50", "places 3, 7-9 and 12", "place 4". */
  function placesText(positions) {
    const runs = [];
    for (const position of positions) {
      const last = runs[runs.length - 1];
      if (last && position === last[1] + 1) last[1] = position;
      else runs.push([position, position]);
    }
    const parts = runs.map(([from, to]) => (from === to ? `${from}` : `${from}-${to}`));
    const joined = parts.length > 1 ? `${parts.slice(0, -1).join(", ")} and ${parts[parts.length - 1]}` : parts[0];
    return `place${positions.length > 1 ? "s" : ""} ${joined}`;
  }

  function render(state) {
    const active = state.queue.filter((e) => e.position == null);
    const waiting = state.queue.filter((e) => e.position != null);
    F.renderKeyed(running, active, (e) => e.id, createRunning, updateRunning);
    F.renderKeyed(line, waiting, (e) => e.id, createPlace, updatePlace);
    document.getElementById("running-empty").hidden = active.length > 0;
    document.getElementById("line-empty").hidden = waiting.length > 0;
    const mine = waiting.filter((e) => e.mine).map((e) => e.position);
    // The state is a window (protocol version 2): the head of the line and your entries.
    const more = state.waiting - waiting.length;
    const transferring = active.filter((e) => e.status !== "retrying").length;
    const parts = [
      `${state.waiting.toLocaleString("en")} waiting`,
      more > 0 ? `${more.toLocaleString("en")} more waiting beyond those shown` : null,
      `${transferring} transferring`,
      active.length > transferring ? `${active.length - transferring} waiting to retry` : null,
      mine.length
        ? `your ${mine.length === 1 ? "entry" : `${mine.length} entries`}: ${placesText(mine)}`
        : "none of yours waiting",
    ];
    const summary = parts.filter(Boolean).join(" · ");
    const node = document.getElementById("summary");
    // Only when it changes: the region is aria-live, and the clock re-renders every second.
    if (node.textContent !== summary) node.textContent = summary;
    F.showPaused(state.paused);
  }

  /** The clocks (estimates, elapsed, next try) of the entries shown in full, every second. */
  function tick() {
    if (!client.state || document.visibilityState !== "visible") return;
    for (const entry of client.state.queue) {
      if (entry.title === undefined) continue;
      const list = entry.position == null ? running : line;
      const node = list.querySelector(`[data-key="${CSS.escape(entry.id)}"] .entry-meta`);
      if (!node) continue;
      const text = entry.position == null ? runningText(entry) : [entry.mine ? "Yours" : entry.owner, E.etaText(entry)].filter(Boolean).join(" · ");
      if (node.textContent !== text) node.textContent = text;
    }
  }

  async function onClick(event) {
    const button = event.target.closest("button[data-action=cancel]");
    if (!button) return;
    const id = button.closest("li").dataset.key;
    button.disabled = true;
    try {
      await F.api("DELETE", `/api/queue/${encodeURIComponent(id)}`);
      // The socket removes the entry; nothing to draw here.
    } catch (error) {
      button.disabled = false;
      F.notify("error", `Could not cancel: ${error.message}`);
    }
  }

  running.addEventListener("click", onClick);
  line.addEventListener("click", onClick);

  const client = new F.QueueClient({
    initial: F.readJson("initial-snapshot"),
    onState: (state, message) => {
      render(state);
      F.notifyFinished(message);
    },
    onConnection: F.showConnection,
  });
  client.start();
  // Estimates, elapsed times and retries count with the clock, not with events.
  setInterval(tick, 1000);
  document.addEventListener("fathomloom:estimates", () => client.state && render(client.state));
  window.fathomloomClient = client;
})();
