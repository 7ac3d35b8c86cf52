// Keeps the admin's accumulated-time cells ticking between page loads.
//
// The server renders each cell with the time accumulated at render time (data-seconds) and,
// for a run that stops growing at the maximum run length, that ceiling (data-max-seconds).
// The script adds the wall time elapsed since the page loaded; the format matches the
// server's: H:MM:SS with unbounded hours, whole seconds cut off.
"use strict";

(function () {
  const TICK_MS = 250; // milliseconds; short enough that seconds never visibly lag
  const loadedAt = performance.now();

  function format(seconds) {
    const whole = Math.max(0, Math.floor(seconds));
    const hours = Math.floor(whole / 3600);
    const minutes = Math.floor((whole % 3600) / 60);
    const secs = whole % 60;
    return hours + ":" + String(minutes).padStart(2, "0") + ":" + String(secs).padStart(2, "0");
  }

  function tick() {
    const elapsed = (performance.now() - loadedAt) / 1000;
    for (const cell of document.querySelectorAll('.ts-live[data-running="1"]')) {
      // A cell swapped in by the live list counts from when it was rendered, not the page.
      const since = cell.dataset.renderedAt
        ? (performance.now() - parseFloat(cell.dataset.renderedAt)) / 1000
        : elapsed;
      let seconds = parseFloat(cell.dataset.seconds) + since;
      if (cell.dataset.maxSeconds !== undefined) {
        seconds = Math.min(seconds, parseFloat(cell.dataset.maxSeconds));
      }
      const text = format(seconds);
      if (cell.textContent !== text) {
        cell.textContent = text;
      }
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, TICK_MS);
  });
})();
