// parallax portal: live updates for a job page, from its event stream.
// Pages read without this script; it only moves progress bars and marks on as answers
// arrive. Answers are untrusted: it writes text (textContent) and class names it builds
// from a fixed alphabet, never HTML.
(function () {
  "use strict";
  var main = document.querySelector("main[data-job]");
  if (!main || !window.EventSource) return;
  var job = main.getAttribute("data-job");
  var after = main.getAttribute("data-after") || "0";
  var url = "/api/v1/jobs/" + encodeURIComponent(job) + "/events?after=" + encodeURIComponent(after);

  function cls(s) { return String(s).toLowerCase().replace(/[^a-z]/g, ""); }
  function ended(c) { return c.succeeded + c.failed + c.parked + c.cancelled; }
  function all(c) { return ended(c) + c.pending + c.running; }
  function byData(attr, value) {
    var found = [];
    document.querySelectorAll("[" + attr + "]").forEach(function (el) {
      if (el.getAttribute(attr) === value) found.push(el);
    });
    return found;
  }
  function setBar(cell, done, planned) {
    byData("data-cell", cell).forEach(function (bar) { bar.max = planned; bar.value = done; bar.textContent = done + " of " + planned; });
    byData("data-count", cell).forEach(function (count) { count.textContent = done + " / " + planned; });
  }

  var source = new EventSource(url);
  source.addEventListener("progress", function (ev) {
    var view = JSON.parse(ev.data);
    setBar("total", ended(view.total.counts), view.planned);
    view.cells.forEach(function (c) { setBar(c.model_id + "|" + c.region, ended(c.counts), all(c.counts)); });
    main.setAttribute("data-done", view.done ? "true" : "false");
  });
  source.addEventListener("execution", function (ev) {
    var e = JSON.parse(ev.data);
    var id = String(e.execution_id);
    var shown = e.label || e.status;
    var mark = document.getElementById("m-" + id);
    if (mark) {
      mark.className = "mark l-" + cls(shown);
      mark.textContent = shown.charAt(0).toUpperCase();
      mark.title = shown + " · sample " + e.sample;
    }
    byData("data-label", id).forEach(function (badge) {
      badge.className = "badge l-" + cls(shown);
      badge.textContent = shown;
    });
    byData("data-text", id).forEach(function (text) {
      // An answer that was not there when the page was drawn: shown as it came (the
      // word diff comes with a reload).
      if (text.querySelector("i") && (e.response_text != null || e.error != null)) {
        text.textContent = e.response_text != null ? e.response_text : e.error;
      }
    });
    byData("data-meta", id).forEach(function (meta) {
      var parts = [];
      if (e.latency_ms != null) parts.push(e.latency_ms + " ms");
      if (e.usage && e.usage.completion_tokens != null) parts.push(e.usage.completion_tokens + " tokens");
      meta.textContent = parts.length ? " · " + parts.join(" · ") : "";
    });
  });
  source.addEventListener("error", function () {
    // EventSource reconnects by itself, sending Last-Event-ID: nothing is missed.
    main.setAttribute("data-live", "reconnecting");
  });
  source.addEventListener("open", function () { main.setAttribute("data-live", "open"); });
})();
