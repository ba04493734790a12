/* My meetings: connect Fathom, sync, and per meeting queue / cancel / retry / share link,
 * each meeting's state following the live queue without reloading. */
"use strict";

(function () {
  const F = window.Fathomloom;
  const { el } = F;
  const config = F.readJson("client-config");
  const ACTIVE = new Set(["queued", "running", "retrying"]);
  // meeting id -> its latest entry: rendered by the server, then kept up to date by events.
  const latest = new Map(Object.entries(F.readJson("latest-entries") || {}));
  let state = null;

  function rowOf(meetingId) {
    return document.querySelector(`.meeting[data-meeting-id="${CSS.escape(String(meetingId))}"]`);
  }

  function button(action, text, title) {
    return el("button", {
      type: "button",
      // The one next step is primary; cancelling or transferring again is not.
      class: (action === "queue" && text === "Queue") || action === "retry" ? "button primary small" : "button small",
      "data-action": action,
      "aria-label": `${text}: “${title}”`,
      text,
    });
  }

  function renderRow(row) {
    const entry = latest.get(row.dataset.meetingId);
    const title = row.querySelector("h3").textContent;
    const status = row.querySelector(".meeting-status");
    const actions = row.querySelector(".meeting-actions");
    row.dataset.status = entry ? entry.status : "none";
    const wanted = [];
    let text = "Not queued.";
    let showProgress = false;
    if (entry && entry.status === "queued") {
      const eta = F.formatDuration(F.etaSeconds(entry, config));
      text = `In line: place ${entry.position}${eta ? `, done in ${eta}` : ""}.`;
      wanted.push(["cancel", "Cancel"]);
    } else if (entry && entry.status === "running") {
      text = "Transferring now.";
      showProgress = true;
      wanted.push(["cancel", "Cancel"]);
    } else if (entry && entry.status === "retrying") {
      text = `Waiting to retry after an error: ${entry.last_error || "a temporary error"}.`;
      wanted.push(["cancel", "Cancel"]);
    } else if (entry && entry.status === "completed") {
      text = entry.result_url ? "Transferred." : "Transferred (no share link was made).";
      wanted.push(["queue", "Transfer again"]);
    } else if (entry && entry.status === "failed") {
      text = `Failed: ${entry.last_error || "no reason given"}.`;
      wanted.push(["retry", "Retry"]);
    } else if (entry && entry.status === "ended") {
      text = "Finished while this page was offline; reload the page to see how.";
    } else {
      wanted.push(["queue", "Queue"]);
    }
    const line = status.querySelector(".status-text") || status.appendChild(el("p", { class: "status-text" }));
    if (line.textContent !== text) line.textContent = text;
    let progress = status.querySelector(".progress");
    if (showProgress) {
      if (!progress) progress = status.appendChild(F.progressBar(`Transfer of “${title}”`));
      F.updateProgress(progress, entry);
    } else if (progress) {
      progress.remove();
    }
    let share = status.querySelector("a.share");
    if (entry && entry.status === "completed" && entry.result_url) {
      if (!share) share = status.appendChild(el("a", { class: "share button", rel: "noopener" }));
      share.href = entry.result_url;
      share.textContent = "Open the share link";
    } else if (share) {
      share.remove();
    }
    // Keep buttons that stay (focus stays on them); replace the rest.
    const key = wanted.map(([action]) => action).join(",");
    if (actions.dataset.actions !== key) {
      // A clicked button is disabled while its request runs, which takes focus away from it:
      // keepFocus says the person is working in this row, so keyboard focus is not lost.
      const hadFocus = actions.contains(document.activeElement) || row.dataset.keepFocus;
      actions.replaceChildren(...wanted.map(([action, label]) => button(action, label, title)));
      actions.dataset.actions = key;
      if (hadFocus && actions.firstElementChild) actions.firstElementChild.focus();
      delete row.dataset.keepFocus;
    }
  }

  function renderAll() {
    document.querySelectorAll(".meeting").forEach(renderRow);
  }

  function remember(entry) {
    if (entry && entry.meeting_id != null) latest.set(String(entry.meeting_id), entry);
  }

  function onState(newState, message) {
    if (message && message.type === "QueueSnapshot" && message.reset) {
      // The server could not replay what we missed: an active entry that is gone finished
      // somehow, and the snapshot cannot say how.
      const present = new Set(newState.queue.map((e) => e.id));
      for (const [meetingId, entry] of latest) {
        if (ACTIVE.has(entry.status) && !present.has(entry.id)) {
          latest.set(meetingId, { ...entry, status: "ended" });
        }
      }
    }
    if (message && message.type === "QueueUpdate") message.queue.filter((e) => e.mine).forEach(remember);
    // The state carries progress ticks; entries that are still active are freshest there.
    newState.queue.filter((e) => e.mine).forEach(remember);
    state = newState;
    F.showPaused(newState.paused);
    F.notifyFinished(message);
    renderAll();
  }

  function showRowError(row, text) {
    const error = row.querySelector(".meeting-error");
    error.textContent = text;
    error.hidden = !text;
  }

  async function act(row, action) {
    const meetingId = row.dataset.meetingId;
    const before = latest.get(meetingId);
    showRowError(row, "");
    let entry;
    if (action === "queue") {
      entry = await F.api("POST", "/api/queue", { meeting_id: Number(meetingId) });
    } else if (action === "cancel") {
      entry = await F.api("DELETE", `/api/queue/${encodeURIComponent(before.id)}`);
    } else if (action === "retry") {
      entry = await F.api("POST", `/api/queue/${encodeURIComponent(before.id)}/retry`);
    }
    // The socket normally tells us first. Use the answer only if it has not: the entry we
    // know is still the one from before the click, unchanged.
    const now = latest.get(meetingId);
    if (now === before && entry) {
      remember(entry);
      renderRow(row);
    }
  }

  document.getElementById("meetings")?.addEventListener("click", async (event) => {
    const target = event.target.closest("button[data-action]");
    if (!target) return;
    const row = target.closest(".meeting");
    row.dataset.keepFocus = "1";
    target.disabled = true;
    try {
      await act(row, target.dataset.action);
    } catch (error) {
      showRowError(row, error.message);
    } finally {
      target.disabled = false;
      if (row.dataset.keepFocus && target.isConnected) target.focus();
      delete row.dataset.keepFocus;
    }
  });

  // --- the Fathom account ----------------------------------------------------------------

  /* A form with one secret field: checks it is filled, sends it with `save(value)`, shows
   * the server's refusal by the field. `busyLabel` replaces the button's text meanwhile. */
  function secretForm(form, { field, missing, busyLabel, save }) {
    form?.addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = form.querySelector(`input[name=${field}]`);
      const error = form.querySelector(".form-error");
      const submit = form.querySelector("button[type=submit]");
      const label = submit.textContent;
      const fail = (text) => {
        error.textContent = text;
        error.hidden = false;
        input.focus();
      };
      error.hidden = true;
      if (!input.value.trim()) return fail(missing);
      submit.disabled = true;
      if (busyLabel) submit.textContent = busyLabel;
      try {
        await save(input.value.trim());
        input.value = "";
      } catch (failure) {
        fail(failure.message);
      } finally {
        submit.disabled = false;
        submit.textContent = label;
      }
    });
  }

  document.querySelectorAll(".fathom-key-form").forEach((form) =>
    secretForm(form, {
      field: "api_key",
      missing: "Paste your Fathom API key first.",
      busyLabel: "Checking the key with Fathom…",
      save: async (apiKey) => {
        await F.api("POST", "/api/credentials/fathom", { api_key: apiKey });
        // The page shows the connection (the key's last four only) as the server has it.
        window.location.reload();
        await new Promise(() => {}); // stay busy until the page goes
      },
    }),
  );

  const autoQueue = document.getElementById("auto-queue");
  autoQueue?.addEventListener("change", async () => {
    const status = document.getElementById("auto-queue-status");
    const wanted = autoQueue.checked;
    autoQueue.disabled = true;
    status.textContent = "Saving…";
    try {
      const answer = await F.api("PATCH", "/api/credentials/fathom", { auto_queue: wanted });
      autoQueue.checked = answer && typeof answer.auto_queue === "boolean" ? answer.auto_queue : wanted;
      status.textContent = autoQueue.checked
        ? "Saved: new meetings join the line by themselves."
        : "Saved: new meetings wait for you to queue them.";
    } catch (failure) {
      autoQueue.checked = !wanted;
      status.textContent = `Not saved: ${failure.message}`;
    } finally {
      autoQueue.disabled = false;
      autoQueue.focus();
    }
  });

  secretForm(document.getElementById("webhook-secret-form"), {
    field: "secret",
    missing: "Paste the signing secret from Fathom first.",
    save: async (secret) => {
      const answer = await F.api("PUT", "/api/credentials/fathom/webhook", { secret });
      if (answer && answer.secret_set) {
        document.getElementById("webhook-status").textContent = "Saved: Fathom's deliveries are accepted now.";
      }
    },
  });

  const disconnect = document.getElementById("disconnect");
  disconnect?.addEventListener("click", async () => {
    const status = document.getElementById("disconnect-status");
    if (!window.confirm("Disconnect your Fathom account from fathomloom?")) return;
    disconnect.disabled = true;
    status.textContent = "Disconnecting…";
    try {
      await F.api("DELETE", "/api/credentials/fathom");
      window.location.reload();
    } catch (failure) {
      status.textContent = `Not disconnected: ${failure.message}`;
      disconnect.disabled = false;
    }
  });

  const sync = document.getElementById("sync");
  sync?.addEventListener("click", async () => {
    const status = document.getElementById("sync-status");
    sync.disabled = true;
    status.textContent = "Syncing with Fathom…";
    try {
      const answer = await F.api("POST", "/api/meetings/sync", {});
      const summary = syncSummary(answer);
      sessionStorage.setItem("fathomloom.synced", summary);
      // New meetings are rendered by the server; reloading keeps one way of drawing them.
      window.location.reload();
    } catch (failure) {
      status.textContent = `Sync failed: ${failure.message}`;
      sync.disabled = false;
    }
  });

  function syncSummary(answer) {
    if (!answer || typeof answer !== "object") return "Synced with Fathom.";
    const parts = [];
    for (const key of ["created", "updated", "unchanged"]) {
      if (typeof answer[key] === "number") parts.push(`${answer[key]} ${key}`);
    }
    return parts.length ? `Synced with Fathom: ${parts.join(", ")}.` : "Synced with Fathom.";
  }

  const synced = sessionStorage.getItem("fathomloom.synced");
  if (synced) {
    sessionStorage.removeItem("fathomloom.synced");
    document.getElementById("sync-status").textContent = synced;
  }

  const client = new F.QueueClient({
    initial: F.readJson("initial-snapshot"),
    onState,
    onConnection: F.showConnection,
  });
  client.start();
  setInterval(() => state && renderAll(), 15000);
  window.fathomloomClient = client;
})();
