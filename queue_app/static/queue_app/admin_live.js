/* The admin's queue list follows the live queue: it listens on /queue_updates from the seq
 * the list was drawn at and, once the queue changes, says the list is stale and offers a
 * refresh. It does not redraw by itself: staff may be choosing rows for an action. */
"use strict";

(function () {
  const controls = document.getElementById("queue-controls");
  const live = document.getElementById("queue-live");
  const stale = document.getElementById("queue-stale");
  if (!controls || !live || !stale || !("WebSocket" in window)) return;
  const drawnAt = Number(controls.dataset.seq || "0");
  let seen = drawnAt;
  let changes = 0;
  let attempt = 0;

  function showStale() {
    live.hidden = true;
    stale.hidden = false;
    stale.querySelector(".stale-text").textContent =
      changes > 0
        ? `The queue has changed since this list was loaded (${changes} ${changes === 1 ? "change" : "changes"}).`
        : "The queue may have changed since this list was loaded.";
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/queue_updates?last_seq=${seen}`);
    socket.addEventListener("open", () => {
      attempt = 0;
      if (stale.hidden) {
        live.hidden = false;
        live.textContent = "Following the live queue: this list is current.";
      }
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (message.type === "QueueUpdate" && message.seq > seen) {
        seen = message.seq;
        changes += 1;
        showStale();
      } else if (message.type === "QueueSnapshot" && message.seq !== seen) {
        // A resume too far back (or a restored database): the list cannot be trusted.
        seen = message.seq;
        showStale();
      }
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4401 || event.code === 4403) {
        live.hidden = stale.hidden === false;
        live.textContent = "Not following the live queue (signed out). Reload the page.";
        return;
      }
      if (stale.hidden) {
        live.hidden = false;
        live.textContent = "Reconnecting to the live queue…";
      }
      const delay = Math.min(1000 * 2 ** attempt, 30000) * (0.5 + Math.random() / 2);
      attempt += 1;
      setTimeout(connect, delay);
    });
  }

  document.getElementById("queue-refresh").addEventListener("click", () => location.reload());
  connect();
})();
