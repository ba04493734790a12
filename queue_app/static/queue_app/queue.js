/* The queue page: the head of the line and mine, live. Mine in full (position, ETA, progress, cancel);
 * everyone else's as anonymous places, since that is all the server sends about them. */
"use strict";

(function () {
  const F = window.Fathomloom;
  const { el } = F;
  const config = F.readJson("client-config");
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

  function updateRunning(node, entry) {
    node.dataset.status = entry.status;
    if (entry.title === undefined) return;
    node.querySelector(".entry-title").textContent = entry.title;
    const meta = node.querySelector(".entry-meta");
    if (entry.status === "retrying") {
      meta.textContent = `Waiting to retry: ${entry.last_error || "a temporary error"}`;
    } else {
      const who = entry.mine ? "Yours" : entry.owner;
      const eta = F.formatDuration(F.etaSeconds(entry, config));
      meta.textContent = [who, eta && `done in ${eta}`].filter(Boolean).join(" · ");
    }
    F.updateProgress(node.querySelector(".progress"), entry);
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
    const eta = F.formatDuration(F.etaSeconds(entry, config));
    const who = entry.mine ? "Yours" : entry.owner;
    node.querySelector(".entry-meta").textContent = [who, eta && `done in ${eta}`]
      .filter(Boolean)
      .join(" · ");
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
    const parts = [
      more > 0 ? `${state.waiting} waiting (${more} more not shown)` : `${state.waiting} waiting`,
      `${active.length} transferring`,
      mine.length ? `your place${mine.length > 1 ? "s" : ""}: ${mine.join(", ")}` : "none of yours waiting",
    ];
    document.getElementById("summary").textContent = parts.join(" · ");
    F.showPaused(state.paused);
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
  // ETAs of running transfers count down with the clock, not with events.
  setInterval(() => client.state && render(client.state), 15000);
  window.fathomloomClient = client;
})();
