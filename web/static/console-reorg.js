// The console's reorganization batch page: polls the batch's progress.json every second and
// moves the progress bar; when the batch is finished, reloads the page once so the final
// report (old -> new) is shown. Without this script the page is right when reloaded by hand.
// Served as a file: the CSP forbids inline scripts.
(function () {
  "use strict";

  var box = document.getElementById("reorg-progress-box");
  if (!box || box.dataset.finished === "1") { return; }
  var url = box.dataset.progressUrl;
  var bar = document.getElementById("reorg-progress");
  var text = document.getElementById("reorg-progress-text");
  var status = document.getElementById("reorg-status");
  var failures = 0;

  function show(p) {
    if (bar) {
      bar.max = p.total > 0 ? p.total : 1;
      bar.value = p.done;
    }
    if (text && p.progress_text) { text.textContent = p.progress_text; }
    if (status && p.status_text) { status.textContent = p.status_text; }
  }

  function poll() {
    var request = new XMLHttpRequest();
    request.open("GET", url);
    request.setRequestHeader("Accept", "application/json");
    request.onload = function () {
      if (request.status !== 200) { retry(); return; }
      var p;
      try { p = JSON.parse(request.responseText); } catch (e) { retry(); return; }
      failures = 0;
      show(p);
      if (p.finished) {
        window.location.reload();
      } else {
        window.setTimeout(poll, 1000);
      }
    };
    request.onerror = retry;
    request.send();
  }

  function retry() {
    failures += 1;
    if (failures < 30) { window.setTimeout(poll, 2000); }
  }

  window.setTimeout(poll, 1000);
}());
