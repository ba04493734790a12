/* The share page: the transcript follows the recording (the line being spoken is marked
 * aria-current and kept in view, unless the reader has scrolled away); a line's time plays
 * from there; the owner's choice of who may open the page is saved as it changes. */
"use strict";

(function () {
  const player = document.getElementById("player");
  const transcript = document.getElementById("transcript");
  if (player && transcript) {
    const cues = Array.from(transcript.children).map((node) => ({ node, start: Number(node.dataset.start) || 0 }));
    let current = null;
    let readerScrolled = 0;
    window.addEventListener("wheel", () => (readerScrolled = Date.now()), { passive: true });
    window.addEventListener("touchmove", () => (readerScrolled = Date.now()), { passive: true });

    function follow() {
      const time = player.currentTime;
      let found = null;
      for (const cue of cues) {
        if (cue.start <= time) found = cue;
        else break;
      }
      if (found === current) return;
      if (current) current.node.removeAttribute("aria-current");
      current = found;
      if (!current) return;
      current.node.setAttribute("aria-current", "true");
      // Keep it in view, but never pull the page from under someone reading elsewhere.
      if (Date.now() - readerScrolled > 5000) current.node.scrollIntoView({ block: "nearest" });
    }

    player.addEventListener("timeupdate", follow);
    player.addEventListener("seeked", follow);
    transcript.addEventListener("click", (event) => {
      const button = event.target.closest(".cue-time");
      if (!button) return;
      player.currentTime = Number(button.closest("li").dataset.start) || 0;
      player.play().catch(() => {});
      follow();
    });
    follow();
  }

  const form = document.getElementById("share-access");
  if (form) {
    const status = document.getElementById("access-status");
    const token = document.querySelector('meta[name="csrf-token"]');
    form.addEventListener("change", async (event) => {
      const access = event.target.value;
      status.textContent = "Saving…";
      try {
        const response = await fetch(form.dataset.api, {
          method: "PUT",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": token ? token.content : "" },
          body: JSON.stringify({ access }),
        });
        if (!response.ok) throw new Error(`The server answered ${response.status}.`);
        status.textContent =
          access === "anyone" ? "Saved: anyone with the link can open it." : "Saved: only signed-in users can open it.";
      } catch (error) {
        status.textContent = `Could not save: ${error.message}`;
      }
    });
    form.addEventListener("submit", (event) => event.preventDefault());
  }
})();
