/* Asking before what cannot be taken back: stopping a running transfer, and transferring a
 * meeting again (a second copy in Loom). A <dialog> in the page's own style, opened modal:
 * focus goes to the safe choice, Tab stays inside, Escape or the safe button says no, and
 * focus returns to the button that asked.
 *
 * It listens in the capture phase for clicks on the pages' buttons (data-action), so the
 * pages' own scripts run unchanged once the answer is yes. */
"use strict";

(function () {
  const F = window.Fathomloom;
  const { el } = F;
  let dialog = null;
  let pending = null; // {resolve, opener} of the question the dialog shows

  function build() {
    dialog = el(
      "dialog",
      { class: "confirm", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" },
      el("h2", { id: "confirm-title" }),
      el("p", { id: "confirm-text" }),
      el(
        "form",
        { method: "dialog", class: "confirm-buttons" },
        el("button", { type: "submit", value: "no", class: "button", "data-choice": "no" }),
        el("button", { type: "submit", value: "yes", class: "button primary danger", "data-choice": "yes" })
      )
    );
    document.body.append(dialog);
    // One listener for every question. The close event comes in a task of its own, so the
    // one for an earlier question can arrive after the dialog has opened again (Escape,
    // then Enter on the same button at once): while the dialog is open it is that stale
    // event, and the question now asked is left to wait for its own.
    dialog.addEventListener("close", () => {
      if (dialog.open || !pending) return;
      const { resolve, opener } = pending;
      pending = null;
      if (opener && opener.isConnected) opener.focus();
      resolve(dialog.returnValue === "yes");
    });
  }

  /** Ask; resolves true for yes. {title, text, yes, no}. */
  function ask({ title, text, yes, no }) {
    if (!dialog) build();
    const opener = document.activeElement;
    dialog.querySelector("#confirm-title").textContent = title;
    dialog.querySelector("#confirm-text").textContent = text;
    dialog.querySelector("[data-choice=yes]").textContent = yes;
    dialog.querySelector("[data-choice=no]").textContent = no;
    dialog.returnValue = "no";
    // A question whose close event has not arrived yet is over: it was answered no.
    if (pending) pending.resolve(false);
    return new Promise((resolve) => {
      pending = { resolve, opener };
      dialog.showModal();
      dialog.querySelector("[data-choice=no]").focus();
    });
  }

  function titleNear(button) {
    const holder = button.closest(".meeting, .entry");
    const node = holder && holder.querySelector("h3, .entry-title");
    return node ? node.textContent.trim() : "this meeting";
  }

  /** The question a click on `button` needs first, or null. */
  function questionFor(button) {
    const action = button.dataset.action;
    const holder = button.closest("[data-status]");
    const status = holder ? holder.dataset.status : "";
    const title = titleNear(button);
    if (action === "cancel" && status === "running") {
      return {
        title: `Stop the transfer of “${title}”?`,
        text: "It is being transferred now. Stopping throws away what has been moved so far; you can queue it again later.",
        yes: "Stop the transfer",
        no: "Keep transferring",
      };
    }
    if (action === "queue" && status === "completed") {
      return {
        title: `Transfer “${title}” again?`,
        text: "It is in Loom already. Transferring again makes a second copy with a new share link.",
        yes: "Transfer again",
        no: "Don't transfer",
      };
    }
    return null;
  }

  document.addEventListener(
    "click",
    (event) => {
      const button = event.target.closest && event.target.closest("button[data-action]");
      if (!button || button.dataset.confirmed) return;
      const question = questionFor(button);
      if (!question) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      ask(question).then((yes) => {
        if (!yes || !button.isConnected) return;
        button.dataset.confirmed = "1";
        try {
          button.click();
        } finally {
          delete button.dataset.confirmed;
        }
      });
    },
    true
  );

  F.confirm = ask;
})();
