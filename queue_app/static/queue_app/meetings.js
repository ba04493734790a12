/* My meetings: connect Fathom, sync; one page of the library (the server searches,
 * filters and pages: the URL holds all of it, so reload and back work); select meetings and
 * queue them in one request, or every one matching the filters; per meeting queue / cancel
 * / retry / share link. Each row's state follows the live queue without reloading; only
 * the page's rows are drawn, whatever the size of the library or the line. */
"use strict";

(function () {
  const F = window.Fathomloom;
  const { el } = F;
  const config = F.readJson("client-config");
  const ACTIVE = new Set(["queued", "running", "retrying"]);
  // meeting id -> its latest entry: rendered by the server, then kept up to date by events.
  const latest = new Map(Object.entries(F.readJson("latest-entries") || {}));
  // The meetings on this page: entries of the others (a bulk of thousands) are not kept.
  const onPage = new Set(Array.from(document.querySelectorAll(".meeting"), (row) => row.dataset.meetingId));
  let state = null;

  function rowOf(meetingId) {
    return document.querySelector(`.meeting[data-meeting-id="${CSS.escape(String(meetingId))}"]`);
  }

  function button(action, text, title) {
    return el("button", {
      type: "button",
      // Retrying a failure is the one next step; queueing one of many is not the page's
      // main action (queueing the selection is), and cancelling never is.
      class: action === "retry" ? "button primary small" : "button small",
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
    if (entry && entry.meeting_id != null && onPage.has(String(entry.meeting_id))) {
      latest.set(String(entry.meeting_id), entry);
    }
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
    row.querySelector(".meeting-note").hidden = true;
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

  // --- finding meetings -------------------------------------------------------------------

  // The form works as a plain GET; this keeps the URL to the filters actually set, so it
  // reads (and bookmarks) as what was asked for.
  document.getElementById("library-filters")?.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [name, value] of new FormData(event.target)) {
      if (String(value).trim()) query.set(name, String(value).trim());
    }
    const search = query.toString();
    window.location.assign(search ? `${window.location.pathname}?${search}` : window.location.pathname);
  });

  // --- selecting meetings and queueing many at once --------------------------------------

  const boxes = Array.from(document.querySelectorAll(".select-meeting"));
  const bar = document.getElementById("bulk-bar");
  const selectPage = document.getElementById("select-page");
  const selectionCount = document.getElementById("selection-count");
  const queueSelected = document.getElementById("queue-selected");
  const queueMatching = document.getElementById("queue-matching");
  const matchingHelp = document.getElementById("queue-matching-help");
  const banner = document.getElementById("select-all-banner");
  const bannerText = document.getElementById("select-all-text");
  const bannerButton = document.getElementById("select-all-matching");
  const result = document.getElementById("bulk-result");
  const total = config.matching_count || 0;
  const filtered = Object.keys(config.filters || {}).length > 0;
  // More than one request may take: the server would refuse it, so the page does not offer it.
  const tooMany = total > config.max_bulk;
  let allMatching = false; // Gmail's "select all 1,234 matching", beyond this page
  let lastClicked = null; // for shift-click ranges

  const number = (n) => n.toLocaleString("en-US");
  const meetingsText = (n) => `${number(n)} meeting${n === 1 ? "" : "s"}`;
  const selectedIds = () => boxes.filter((box) => box.checked).map((box) => Number(box.value));
  const matchingLabel = () => (filtered ? `Queue all ${number(total)} matching` : `Queue all ${number(total)}`);

  function updateSelection() {
    const chosen = selectedIds().length;
    const wholePage = boxes.length > 0 && chosen === boxes.length;
    if (!wholePage) allMatching = false;
    selectPage.checked = wholePage;
    selectPage.indeterminate = chosen > 0 && !wholePage;
    for (const box of boxes) box.closest(".meeting").classList.toggle("selected", box.checked);
    if (allMatching) {
      selectionCount.textContent = `All ${meetingsText(total)}${filtered ? " matching" : ""} selected`;
      queueSelected.textContent = matchingLabel();
    } else {
      selectionCount.textContent = chosen ? `${number(chosen)} selected` : "None selected";
      queueSelected.textContent = chosen ? `Queue ${number(chosen)} selected` : "Queue selected";
    }
    queueSelected.disabled = chosen === 0;
    queueMatching.hidden = allMatching; // the selected button does just that now
    // The page is all selected and more match: offer the rest (Gmail's banner).
    const offer = wholePage && total > boxes.length;
    banner.hidden = !offer;
    if (offer && allMatching) {
      bannerText.textContent = `All ${meetingsText(total)}${filtered ? " matching" : ""} are selected.`;
      bannerButton.textContent = "Clear selection";
      bannerButton.hidden = false;
    } else if (offer) {
      bannerText.textContent = `All ${number(boxes.length)} on this page are selected.`;
      bannerButton.textContent = `Select all ${number(total)}${filtered ? " matching" : ""}`;
      bannerButton.hidden = tooMany;
      if (tooMany) bannerText.textContent += ` More than ${number(config.max_bulk)} match: narrow the filters to select them all.`;
    }
  }

  function rowTitle(meetingId) {
    const row = rowOf(meetingId);
    return row ? row.querySelector("h3").textContent : null;
  }

  const REFUSAL_HEADINGS = {
    already_queued: "already in the line",
    not_yours: "not yours",
    not_found: "no longer found",
  };

  /* What a bulk request did: how many joined the line and, grouped by reason, which were
   * refused (by title where the meeting is on this page); refused rows say it too. */
  function showOutcome(answer) {
    const queued = answer.entries.length;
    const refused = answer.refused || [];
    result.className = `bulk-result notice ${refused.length === 0 ? "notice-success" : queued ? "notice-warn" : "notice-error"}`;
    const parts = [];
    parts.push(
      el("p", { class: "bulk-summary" },
        queued ? `Queued ${meetingsText(queued)}. ` : "Nothing was queued. ",
        queued ? el("a", { href: "/queue", text: "Watch them on the Queue page" }) : null,
        queued ? "." : null),
    );
    if (refused.length) {
      const groups = new Map();
      for (const refusal of refused) {
        const key = refusal.code;
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(refusal);
        const note = rowOf(refusal.meeting_id)?.querySelector(".meeting-note");
        if (note) {
          note.textContent = `Not queued: ${refusal.detail}`;
          note.hidden = false;
        }
      }
      const items = [];
      for (const [code, list] of groups) {
        const titles = list.map((r) => rowTitle(r.meeting_id)).filter(Boolean);
        const elsewhere = list.length - titles.length;
        const named = titles.slice(0, 10).map((t) => `“${t}”`);
        if (titles.length > 10) named.push(`${number(titles.length - 10)} more on this page`);
        if (elsewhere) named.push(`${number(elsewhere)} on other pages`);
        const reason = REFUSAL_HEADINGS[code] || list[0].detail;
        items.push(el("li", { text: `${meetingsText(list.length)} ${reason}: ${named.join(", ")}.` }));
      }
      parts.push(el("p", { text: `${meetingsText(refused.length)} not queued:` }), el("ul", {}, ...items));
    }
    parts.push(el("button", { type: "button", class: "link-button", text: "Dismiss", onclick: () => { result.hidden = true; } }));
    result.replaceChildren(...parts);
    result.hidden = false;
  }

  function showBulkError(text) {
    result.className = "bulk-result notice notice-error";
    result.replaceChildren(el("p", { text }));
    result.hidden = false;
  }

  async function queueMany(body, busyText) {
    const buttons = [queueSelected, queueMatching];
    const was = buttons.map((button) => button.disabled);
    buttons.forEach((button) => { button.disabled = true; });
    document.querySelectorAll(".meeting-note").forEach((note) => { note.hidden = true; });
    result.className = "bulk-result notice";
    result.replaceChildren(el("p", { text: busyText }));
    result.hidden = false;
    try {
      const answer = await F.api("POST", "/api/queue", body);
      // The socket usually tells first: an entry it already brought is as fresh or fresher.
      for (const entry of answer.entries) {
        const known = latest.get(String(entry.meeting_id));
        if (!known || known.id !== entry.id) remember(entry);
      }
      renderAll();
      boxes.forEach((box) => { box.checked = false; });
      allMatching = false;
      showOutcome(answer);
    } catch (error) {
      showBulkError(`Nothing was queued: ${error.message}`);
    } finally {
      buttons.forEach((button, index) => { button.disabled = was[index]; });
      updateSelection();
    }
  }

  function queueAllMatching() {
    const what = filtered ? `all ${meetingsText(total)} matching these filters` : `all ${meetingsText(total)}`;
    const ask = `Queue ${what}? Meetings already in the line stay where they are; transferred ones are transferred again.`;
    if (!window.confirm(ask)) return;
    queueMany({ matching: config.filters || {} }, `Queueing ${what}…`);
  }

  if (bar && boxes.length) {
    bar.hidden = false;
    boxes.forEach((box) => { box.hidden = false; });
    queueMatching.textContent = matchingLabel();
    if (tooMany) {
      queueMatching.disabled = true;
      matchingHelp.textContent = `More than ${number(config.max_bulk)} match: narrow the search or the dates to queue them all at once.`;
    }
    document.getElementById("meetings").addEventListener("click", (event) => {
      const box = event.target.closest(".select-meeting");
      if (!box) return;
      const index = boxes.indexOf(box);
      if (event.shiftKey && lastClicked !== null && lastClicked !== index) {
        const [from, to] = [Math.min(lastClicked, index), Math.max(lastClicked, index)];
        for (let i = from; i <= to; i += 1) boxes[i].checked = box.checked;
      }
      lastClicked = index;
      updateSelection();
    });
    selectPage.addEventListener("change", () => {
      boxes.forEach((box) => { box.checked = selectPage.checked; });
      updateSelection();
    });
    bannerButton.addEventListener("click", () => {
      allMatching = !allMatching;
      if (!allMatching) boxes.forEach((box) => { box.checked = false; });
      updateSelection();
      (allMatching ? bannerButton : selectPage).focus();
    });
    queueSelected.addEventListener("click", () => {
      if (allMatching) return queueAllMatching();
      const ids = selectedIds();
      return queueMany({ meeting_ids: ids }, `Queueing ${meetingsText(ids.length)}…`);
    });
    queueMatching.addEventListener("click", queueAllMatching);
    updateSelection();
  }

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
