// Keeps a page current without reloading it: every element marked data-live-region is swapped
// for its fresh rendering when the event stream says something changed (and, if the script
// says data-every, every that many seconds, for what changes without an event).
(function () {
  const script = document.currentScript;
  const types = JSON.parse(script.dataset.events);
  const every = parseFloat(script.dataset.every || "0");  // seconds; 0: on events only
  const DEBOUNCE_MS = 150;  // a burst of events (a replacing start) costs one fetch
  let timer = null;
  let fetching = false;
  let again = false;

  async function refresh() {
    timer = null;
    if (fetching) { again = true; return; }
    fetching = true;
    try {
      const response = await fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      const now = String(performance.now());
      for (const region of document.querySelectorAll("[data-live-region]")) {
        // Never pull a form from under someone typing in it.
        if (region.contains(document.activeElement) && document.activeElement.form) continue;
        if (region.querySelector("input[type=checkbox]:checked")) continue;  // a selection in progress
        const next = fresh.querySelector(`[data-live-region="${region.dataset.liveRegion}"]`);
        if (!next) continue;
        for (const cell of next.querySelectorAll("[data-seconds]")) cell.dataset.renderedAt = now;
        region.replaceWith(document.importNode(next, true));
      }
      document.body.dataset.liveUpdated = now;
    } catch (error) {
      // The next event or period tries again.
    } finally {
      fetching = false;
      if (again) { again = false; soon(); }
    }
  }
  function soon() { if (timer === null) timer = setTimeout(refresh, DEBOUNCE_MS); }

  const stream = new EventSource(script.dataset.stream, { withCredentials: true });
  for (const type of types) stream.addEventListener(type, soon);
  stream.addEventListener("reset", soon);
  stream.addEventListener("open", () => { document.body.dataset.liveConnected = "true"; });
  if (every > 0) setInterval(soon, every * 1000);
})();
