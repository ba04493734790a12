/* The history of my entries (GET /api/activity): what was transferred (with its link), what
 * failed (with Retry), what I or staff cancelled or moved (with staff's note). Drawn from the
 * list rendered into the page, kept live from the events that carry an `outcome` for my
 * entries, and fetched again after a reset. Used by the Queue page ("Done and failed") and
 * My meetings ("Activity"); the list's data-kinds says which outcomes it shows. */
"use strict";

(function () {
  const F = window.Fathomloom;
  const { el } = F;
  const list = document.getElementById("activity-list");
  if (!list) return;
  const empty = document.getElementById("activity-empty");
  const kinds = (list.dataset.kinds || "").split(/\s+/).filter(Boolean);
  const pageSize = Number(list.dataset.limit) || 20;
  let limit = pageSize;
  let items = F.readJson("initial-activity") || [];
  const more = document.getElementById("activity-more");

  function wanted(item) {
    return kinds.length === 0 || kinds.includes(item.kind);
  }

  function when(iso) {
    const date = new Date(iso);
    return el("time", {
      datetime: iso,
      text: date.toLocaleString(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" }),
    });
  }

  /** What happened, in a sentence; `who` is "You" or "Staff" when a person acted. */
  function sentence(item) {
    const title = `“${item.title}”`;
    const staff = item.by === "staff";
    switch (item.kind) {
      case "completed":
        return `${title} is transferred.`;
      case "failed":
        return `${title} failed: ${item.reason || "no reason given"}.`;
      case "cancelled":
        return staff ? `Staff cancelled ${title}.` : `You cancelled ${title}.`;
      case "moved":
        return `Staff moved ${title} to place ${item.position ?? "?"}.`;
      case "retried":
        return staff ? `Staff put ${title} back in line.` : `You put ${title} back in line.`;
      case "retrying":
        return `An attempt at ${title} failed (${item.reason || "a temporary error"}); it will be tried again.`;
      default:
        return title;
    }
  }

  function retryButton(item) {
    return el("button", {
      type: "button",
      class: "button small",
      "data-action": "retry",
      "data-entry": item.entry_id,
      "aria-label": `Retry “${item.title}”`,
      text: "Retry",
    });
  }

  function createItem(item) {
    const node = el("li", { class: `activity activity-${item.kind}`, "data-kind": item.kind, "data-by": item.by });
    node.append(el("p", { class: "activity-text", text: sentence(item) }));
    if (item.note) node.append(el("p", { class: "activity-note", text: `Staff's note: ${item.note}` }));
    const meta = el("p", { class: "meta" }, when(item.created_at));
    if (item.kind === "completed" && item.result_url) {
      meta.append(
        " · ",
        el("a", {
          href: item.result_url,
          rel: "noopener",
          "aria-label": `Open the share link of “${item.title}”`,
          text: "Open the share link",
        })
      );
    }
    node.append(meta);
    if (item.kind === "failed" && item.entry_id) node.append(retryButton(item));
    return node;
  }

  function render() {
    const shown = items.filter(wanted).slice(0, limit);
    F.renderKeyed(list, shown, (item) => item.id, createItem, () => {});
    if (empty) empty.hidden = shown.length > 0;
    annotateMeetings();
  }

  /** On My meetings: a meeting whose transfer staff cancelled says so, with their note,
   * instead of a bare "Not queued." (only while that cancellation is its latest news). */
  function annotateMeetings() {
    const rows = document.querySelectorAll(".meeting[data-meeting-id]");
    if (!rows.length) return;
    const newest = new Map();
    for (const item of items) {
      const key = String(item.meeting_id);
      if (item.meeting_id != null && !newest.has(key)) newest.set(key, item);
    }
    for (const row of rows) {
      const item = newest.get(row.dataset.meetingId);
      let why = row.querySelector(".meeting-why");
      const show = item && item.kind === "cancelled" && item.by === "staff" && row.dataset.status === "cancelled";
      if (!show) {
        if (why) why.remove();
        continue;
      }
      if (!why) {
        why = el("p", { class: "meeting-why" });
        (row.querySelector(".meeting-main") || row).append(why);
      }
      why.textContent = item.note ? `Cancelled by staff. Their note: ${item.note}` : "Cancelled by staff.";
    }
  }

  /** Outcomes of my entries that an event carries, as history items. */
  function itemsFrom(message) {
    if (!message || message.type !== "QueueUpdate") return [];
    return message.queue
      .filter((entry) => entry.mine && entry.outcome)
      .map((entry) => ({
        id: entry.outcome.activity_id,
        kind: entry.outcome.kind,
        by: entry.outcome.by,
        note: entry.outcome.note,
        title: entry.title,
        entry_id: entry.id,
        meeting_id: entry.meeting_id,
        reason: entry.last_error,
        result_url: entry.result_url,
        position: message.global_position,
        next_attempt_at: entry.next_attempt_at,
        created_at: message.timestamp,
      }));
  }

  async function refetch() {
    try {
      const page = await F.api("GET", `/api/activity?limit=${encodeURIComponent(Math.max(limit, 50))}`);
      items = page.results;
      render();
    } catch (error) {
      /* keep what is shown; the next event or reload brings it back */
    }
  }

  window.addEventListener("fathomloom:message", (event) => {
    const message = event.detail;
    if (message && message.type === "QueueSnapshot" && message.reset) {
      refetch();
      return;
    }
    const fresh = itemsFrom(message);
    if (!fresh.length) {
      annotateMeetings(); // the page's rows may have changed state
      return;
    }
    const known = new Set(items.map((item) => item.id));
    items = fresh.filter((item) => !known.has(item.id)).reverse().concat(items);
    render();
  });

  list.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action=retry]");
    if (!button) return;
    button.disabled = true;
    try {
      await F.api("POST", `/api/queue/${encodeURIComponent(button.dataset.entry)}/retry`);
      button.remove();
    } catch (error) {
      button.disabled = false;
      F.notify("error", `Could not retry: ${error.message}`);
    }
  });

  // Older history, a page at a time (My meetings: every kind, so the offset is ours).
  if (more) {
    more.hidden = items.length < pageSize;
    more.addEventListener("click", async () => {
      more.disabled = true;
      try {
        const page = await F.api("GET", `/api/activity?limit=${pageSize}&offset=${items.length}`);
        const known = new Set(items.map((item) => item.id));
        items = items.concat(page.results.filter((item) => !known.has(item.id)));
        limit = items.length;
        more.hidden = !page.next;
        render();
      } catch (error) {
        F.notify("error", `Could not load older activity: ${error.message}`);
      } finally {
        more.disabled = false;
      }
    });
  }

  render();
  // My meetings draws its rows after this script runs.
  document.addEventListener("DOMContentLoaded", annotateMeetings);
  F.activity = { refetch, render };
})();
