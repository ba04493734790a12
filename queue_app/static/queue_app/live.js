/* The live queue in the browser (protocol version 2: a window on the line): state from a
 * snapshot, QueueUpdate events applied in seq order with the rules of
 * queue_app/client_state.py, reconnecting by itself and resuming with last_seq. Shared by
 * every page; each page draws the state with its own script.
 * No build step: plain ES2020, one global (window.Fathomloom). */
"use strict";

(function () {
  // Entries in these states have left the active list; an event carries them once.
  const FINISHED = new Set(["completed", "failed", "cancelled"]);
  const FIRST_DELAY_MS = 1000;
  const MAX_DELAY_MS = 30000;
  // Close code 1012 (service restart): the server said it is restarting, so come back at
  // once, each page at a random moment within RESTART_DELAY_MS, then retry quickly (doubling
  // to RESTART_MAX_DELAY_MS) while the next server starts. docs/protocol.md.
  const SERVICE_RESTART = 1012;
  const RESTART_DELAY_MS = 250;
  const RESTART_MAX_DELAY_MS = 2000;
  // ... if the closed socket had been in use: it got a message or was open this long (a
  // resumed socket with nothing missed gets no message). One accepted and closed at once
  // backs off as usual, so that no server can make a page loop fast.
  const SETTLED_MS = 1000;
  // Idle connections through proxies are often cut after 30-60 s of silence.
  const PING_EVERY_MS = 25000;
  const STEADY_MS = 5000;

  class GapError extends Error {}

  function stateFromSnapshot(snapshot) {
    // Trusted as sent: the snapshot's positions are the server's.
    return {
      seq: snapshot.seq,
      paused: Boolean(snapshot.paused),
      queue_length: snapshot.queue_length,
      waiting: snapshot.waiting,
      head_places: snapshot.head_places,
      queue: snapshot.queue.map((entry) => ({ ...entry })),
    };
  }

  /** Where an entry the event did not carry stands after it (events.shifted): minus the
   * places removed ahead of it (positions before), then plus each place inserted at or ahead
   * of where it now stands (positions after). A run is [first, count] or [first, count, step]. */
  function shifted(position, moved) {
    let removed = 0;
    for (const [first, count, step = 1] of moved.removed) {
      if (first < position) removed += Math.min(count, Math.floor((position - 1 - first) / step) + 1);
    }
    position -= removed;
    for (const [first, count, step = 1] of moved.inserted) {
      if (first > position) break;
      const gap = step - 1;
      position += gap === 0 ? count : Math.min(count, Math.floor((position - first) / gap) + 1);
    }
    return position;
  }

  /** Mine, off the line (running, waiting to retry), or in the first `places` places. */
  function inWindow(entry, places) {
    return Boolean(entry.mine) || entry.position == null || entry.position <= places;
  }

  /** The state after one message; `state` is left unchanged (see client_state.apply_event).
   * The state is a window: own entries, entries off the line, the head of the line. */
  function applyEvent(state, message) {
    if (message.type === "ProgressUpdate") return applyProgress(state, message);
    if (message.seq !== state.seq + 1) {
      throw new GapError(`expected seq ${state.seq + 1}, got ${message.seq}`);
    }
    const carried = message.queue.concat(message.entered);
    const ids = new Set(carried.map((entry) => entry.id));
    const kept = state.queue
      .filter((e) => !ids.has(e.id))
      .map((e) => (e.position == null ? { ...e } : { ...e, position: shifted(e.position, message.moved) }));
    // An entry's `outcome` tells of this change (the history), not of the entry's state.
    const arriving = carried.filter((e) => !FINISHED.has(e.status)).map(({ outcome, ...entry }) => entry);
    const places = state.head_places;
    const queue = kept.concat(arriving).filter((e) => inWindow(e, places));
    queue.sort((a, b) => (a.position != null) - (b.position != null) || (a.position || 0) - (b.position || 0));
    return {
      seq: message.seq,
      paused: Boolean(message.paused),
      queue_length: message.queue_length,
      waiting: message.waiting,
      head_places: places,
      queue,
    };
  }

  function applyProgress(state, message) {
    const queue = state.queue.map((entry) =>
      entry.id === message.entry_id
        ? { ...entry, stage: message.stage, progress: message.progress, worker: message.worker || entry.worker }
        : entry
    );
    return { ...state, queue };
  }

  /**
   * One socket to /queue_updates, kept open. Callbacks:
   *   onState(state, message)  after a snapshot, an event or a progress tick
   *   onConnection(status, detail)  "connecting" | "live" | "reconnecting" | "signed-out" | "refused"
   */
  class QueueClient {
    constructor({ initial, onState, onConnection }) {
      this.state = initial ? stateFromSnapshot(initial) : null;
      this.onState = onState || (() => {});
      this.onConnection = onConnection || (() => {});
      this.delay = FIRST_DELAY_MS;
      this.maxDelay = MAX_DELAY_MS;
      this.socket = null;
      this.retryTimer = null;
      this.pingTimer = null;
      this.steadyTimer = null;
      this.resumeAsked = null; // the seq we asked to resume from, so a gap asks only once
      this.everOpen = false;
      this.stopped = false;
      window.addEventListener("online", () => this.reconnectNow());
    }

    start() {
      if (this.state) this.onState(this.state, null);
      this.connect();
    }

    connect() {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      const url = new URL("/queue_updates", window.location.href);
      url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
      // With a state (rendered into the page, or kept across a drop) resume from its seq:
      // the server replays what we missed, or sends a snapshot with reset: true.
      if (this.state) url.searchParams.set("last_seq", String(this.state.seq));
      this.onConnection(this.everOpen ? "reconnecting" : "connecting", {});
      const socket = new WebSocket(url);
      this.socket = socket;
      socket.onopen = () => {
        socket.openedAt = Date.now();
        // A socket that stays up a while resets the backoff, even if nothing happened to be
        // sent on it; one that is accepted and closed at once (1013) does not.
        clearTimeout(this.steadyTimer);
        this.steadyTimer = setTimeout(() => {
          if (this.socket === socket) this.resetBackoff();
        }, STEADY_MS);
        this.everOpen = true;
        this.resumeAsked = null;
        this.onConnection("live", {});
        this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_EVERY_MS);
      };
      socket.answered = false;
      socket.onmessage = (event) => {
        socket.answered = true;
        this.resetBackoff(); // the server answers: the next drop starts low again
        this.receive(JSON.parse(event.data));
      };
      socket.onclose = (event) => this.closed(socket, event);
    }

    send(message) {
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify(message));
      }
    }

    receive(message) {
      this.handle(message);
      // Page parts that are not the queue (the history list) listen for what arrives.
      window.dispatchEvent(new CustomEvent("fathomloom:message", { detail: message }));
    }

    handle(message) {
      if (message.type === "QueueSnapshot") {
        this.state = stateFromSnapshot(message);
        this.resumeAsked = null;
        this.onState(this.state, message);
      } else if (message.type === "QueueUpdate") {
        if (!this.state || message.seq <= this.state.seq) return; // already applied
        if (message.seq !== this.state.seq + 1) {
          // A gap: ask for what is missing; later events arrive again after the replay.
          if (this.resumeAsked !== this.state.seq) {
            this.resumeAsked = this.state.seq;
            this.send({ type: "resume", last_seq: this.state.seq });
          }
          return;
        }
        this.state = applyEvent(this.state, message);
        this.onState(this.state, message);
      } else if (message.type === "ProgressUpdate") {
        if (!this.state) return;
        this.state = applyProgress(this.state, message);
        this.onState(this.state, message);
      } else if (message.type === "error") {
        console.warn("queue_updates:", message.code, message.detail);
      }
    }

    closed(socket, event) {
      clearInterval(this.pingTimer);
      if (socket !== this.socket || this.stopped) return;
      this.socket = null;
      if (event.code === 4401) {
        this.onConnection("signed-out", {});
        return;
      }
      if (event.code === 4403) {
        this.onConnection("refused", {});
        return;
      }
      let wait;
      const settled = socket.answered || (socket.openedAt && Date.now() - socket.openedAt >= SETTLED_MS);
      if (event.code === SERVICE_RESTART && settled) {
        // The server is restarting: back at a random moment within RESTART_DELAY_MS, then
        // RESTART_DELAY_MS doubling to RESTART_MAX_DELAY_MS until the next one answers.
        wait = Math.floor(Math.random() * RESTART_DELAY_MS);
        this.delay = RESTART_DELAY_MS;
        this.maxDelay = RESTART_MAX_DELAY_MS;
      } else {
        // 1 s doubling to 30 s, plus up to 20% so that a restarted server is not hit by
        // every page in the same instant.
        wait = this.delay + Math.floor(Math.random() * this.delay * 0.2);
        this.delay = Math.min(this.delay * 2, this.maxDelay);
      }
      this.everOpen = true;
      this.onConnection("reconnecting", { retryAt: Date.now() + wait });
      this.retryTimer = setTimeout(() => this.connect(), wait);
    }

    resetBackoff() {
      this.delay = FIRST_DELAY_MS;
      this.maxDelay = MAX_DELAY_MS;
    }

    reconnectNow() {
      if (this.retryTimer) this.connect();
    }
  }

  // --- helpers shared by the pages -----------------------------------------------------------

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  class ApiError extends Error {
    constructor(status, code, detail) {
      super(detail);
      this.status = status;
      this.code = code;
    }
  }

  /** A JSON API call with the session and CSRF token; throws ApiError with {code, detail}. */
  async function api(method, path, body) {
    let response;
    try {
      response = await fetch(path, {
        method,
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(0, "network", "The server cannot be reached. Try again in a moment.");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (!response.ok) {
      const detail = (data && data.detail) || `The server answered ${response.status}.`;
      throw new ApiError(response.status, (data && data.code) || "error", detail);
    }
    return data;
  }

  function readJson(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  /** Build an element: el("p", {class: "x", text: "..."}, child, ...). Text is never HTML. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value == null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  /**
   * Make `container`'s children match `items`, one node per key, in order. A node is kept
   * (and only updated) while its key stays, so focus and progress bars survive; a key can
   * never appear twice.
   */
  function renderKeyed(container, items, keyOf, create, update) {
    const existing = new Map();
    for (const child of Array.from(container.children)) existing.set(child.dataset.key, child);
    const seen = new Set();
    let previous = null;
    for (const item of items) {
      const key = String(keyOf(item));
      if (seen.has(key)) continue;
      seen.add(key);
      let node = existing.get(key);
      if (!node) {
        node = create(item);
        node.dataset.key = key;
      }
      update(node, item);
      const expected = previous ? previous.nextSibling : container.firstChild;
      if (node !== expected) container.insertBefore(node, expected);
      previous = node;
    }
    for (const [key, node] of existing) if (!seen.has(key)) node.remove();
  }

  function formatDuration(seconds) {
    if (seconds == null) return "";
    if (seconds < 60) return "under a minute";
    const minutes = Math.round(seconds / 60);
    if (minutes < 60) return `about ${minutes} min`;
    const hours = Math.floor(minutes / 60);
    return `about ${hours} h ${minutes % 60} min`;
  }

  /** Seconds until done; the formula of selectors.eta_seconds, so it follows the position. */
  function etaSeconds(entry, config) {
    const mean = config.mean_transfer_seconds;
    if (entry.status === "running") {
      const elapsed = entry.started_at ? (Date.now() - Date.parse(entry.started_at)) / 1000 : 0;
      return Math.max(Math.ceil(mean - elapsed), 0);
    }
    if (entry.position == null) return null;
    const rounds = Math.ceil(entry.position / Math.max(config.concurrency, 1));
    return Math.ceil(rounds * mean + mean);
  }

  const STAGES = { downloading: "Downloading from Fathom", uploading: "Uploading to Loom", done: "Finishing" };

  function stageLabel(stage) {
    return STAGES[stage] || (stage ? stage.charAt(0).toUpperCase() + stage.slice(1) : "Starting");
  }

  function progressBar(label) {
    const bar = el("progress", { max: "1", value: "0", "aria-label": label });
    const text = el("span", { class: "progress-text" });
    return el("div", { class: "progress" }, bar, text);
  }

  function updateProgress(node, entry) {
    const bar = node.querySelector("progress");
    const value = Math.min(Math.max(Number(entry.progress) || 0, 0), 1);
    bar.value = value;
    bar.setAttribute("aria-valuetext", `${stageLabel(entry.stage)}: ${Math.round(value * 100)}%`);
    node.querySelector(".progress-text").textContent = `${stageLabel(entry.stage)} · ${Math.round(value * 100)}%`;
  }

  // --- the parts every live page has -------------------------------------------------------

  const CONNECTION_TEXT = {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Reconnecting…",
    "signed-out": "Signed out.",
    refused: "The server refused this connection.",
  };

  function showConnection(status, detail) {
    const node = document.getElementById("connection");
    if (!node) return;
    node.dataset.state = status;
    const text = node.querySelector(".connection-text");
    text.textContent = CONNECTION_TEXT[status] || status;
    clearInterval(showConnection.timer);
    if (status === "reconnecting" && detail.retryAt) {
      // Counts down so people see that it is trying, not stuck.
      const tick = () => {
        const seconds = Math.max(Math.ceil((detail.retryAt - Date.now()) / 1000), 0);
        text.textContent = seconds > 0 ? `Reconnecting… next try in ${seconds} s` : "Reconnecting…";
      };
      tick();
      showConnection.timer = setInterval(tick, 1000);
    }
    if (status === "signed-out") {
      const config = readJson("client-config") || {};
      text.append(" ", el("a", { href: config.login_url || "/accounts/login/", text: "Sign in again" }));
    }
  }

  function showPaused(paused) {
    const banner = document.getElementById("paused-banner");
    if (banner) banner.hidden = !paused;
  }

  const MAX_NOTICES = 4;

  /** A short message in the page's aria-live region; `link` is {href, text, label};
   * `actions` are buttons [{text, label, run}] (the notice goes once one has run). */
  function notify(kind, text, link, actions) {
    const region = document.getElementById("notices");
    if (!region) return;
    const close = el("button", { type: "button", class: "link-button", text: "Dismiss" });
    const buttons = (actions || []).map((action) => {
      const button = el("button", { type: "button", class: "link-button", "aria-label": action.label, text: action.text });
      button.addEventListener("click", async () => {
        button.disabled = true;
        if ((await action.run()) !== false) notice.remove();
        else button.disabled = false;
      });
      return button;
    });
    const notice = el(
      "p",
      { class: `notice notice-${kind}` },
      el("span", { text }),
      link ? el("a", { href: link.href, rel: "noopener", "aria-label": link.label, text: link.text }) : null,
      ...buttons,
      close
    );
    close.addEventListener("click", () => notice.remove());
    region.prepend(notice);
    while (region.children.length > MAX_NOTICES) region.lastElementChild.remove();
  }

  /** Tell the owner that one of theirs completed or failed, from the event that says so. */
  function notifyFinished(message) {
    if (!message || message.type !== "QueueUpdate") return;
    for (const entry of message.queue) {
      if (!entry.mine) continue;
      const outcome = entry.outcome || {};
      const note = outcome.note ? ` Staff's note: ${outcome.note}` : "";
      if (message.update_type === "task_completed") {
        const link = entry.result_url
          ? { href: entry.result_url, text: "Open the share link", label: `Open the share link of “${entry.title}”` }
          : null;
        notify("success", `“${entry.title}” is transferred.`, link);
      } else if (message.update_type === "task_failed") {
        const retry = {
          text: "Retry",
          label: `Retry “${entry.title}”`,
          run: () =>
            api("POST", `/api/queue/${encodeURIComponent(entry.id)}/retry`).then(
              () => true,
              (error) => {
                notify("error", `Could not retry “${entry.title}”: ${error.message}`);
                return false;
              }
            ),
        };
        notify("error", `“${entry.title}” failed: ${entry.last_error || "no reason given"}.`, null, [retry]);
      } else if (outcome.by === "staff" && outcome.kind === "cancelled") {
        notify("error", `Staff cancelled “${entry.title}”.${note}`);
      } else if (outcome.by === "staff" && outcome.kind === "moved") {
        notify("success", `Staff moved “${entry.title}” to place ${message.global_position}.${note}`);
      }
    }
  }

  window.Fathomloom = {
    FINISHED,
    GapError,
    QueueClient,
    ApiError,
    api,
    applyEvent,
    shifted,
    stateFromSnapshot,
    readJson,
    el,
    renderKeyed,
    formatDuration,
    etaSeconds,
    stageLabel,
    progressBar,
    updateProgress,
    showConnection,
    showPaused,
    notify,
    notifyFinished,
  };
})();
