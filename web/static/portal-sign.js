// The officials' portal, placing a visible signature: a click on the preview of the first
// page puts the signature box there (centred on the click, kept on the page) and fills the
// page / x / y / w / h inputs in PDF points from the bottom-left corner. Without this script
// the numeric inputs work alone. Served as a file: the CSP forbids inline scripts.
(function () {
  "use strict";

  var img = document.getElementById("preview");
  if (!img) { return; }
  var field = function (id) { return document.getElementById(id); };
  var inputs = { page: field("page"), x: field("x"), y: field("y"), w: field("w"), h: field("h") };
  var visible = field("mode-visible");
  var invisible = field("mode-invisible");
  var page = {
    left: parseFloat(img.dataset.pageLeft) || 0,
    bottom: parseFloat(img.dataset.pageBottom) || 0,
    width: parseFloat(img.dataset.pageWidth),
    height: parseFloat(img.dataset.pageHeight),
    rotation: parseInt(img.dataset.rotation, 10) || 0
  };
  var defaults = {
    w: parseFloat(img.dataset.boxWidth) || 200,
    h: parseFloat(img.dataset.boxHeight) || 80
  };
  if (!(page.width > 0 && page.height > 0) || page.rotation !== 0) {
    return;  // a rotated page: its picture and its coordinates differ; the inputs remain
  }

  var box = document.createElement("div");
  box.className = "sig-box";
  box.setAttribute("aria-hidden", "true");
  box.hidden = true;
  img.parentNode.appendChild(box);
  img.classList.add("clickable");

  function number(input, fallback) {
    var v = parseFloat(String(input.value).replace(",", "."));
    return isFinite(v) ? v : fallback;
  }

  function clamp(v, lo, hi) { return Math.max(lo, Math.min(hi, v)); }

  function round(v) { return Math.round(v * 10) / 10; }

  // The box over the picture, from the inputs (so typing moves it too).
  function draw() {
    var x = number(inputs.x, NaN), y = number(inputs.y, NaN);
    var w = number(inputs.w, NaN), h = number(inputs.h, NaN);
    var onFirstPage = number(inputs.page, 1) === 1;
    if (invisible && invisible.checked || !onFirstPage ||
        !isFinite(x) || !isFinite(y) || !(w > 0) || !(h > 0)) {
      box.hidden = true;
      return;
    }
    var sx = img.clientWidth / page.width, sy = img.clientHeight / page.height;
    box.style.left = ((x - page.left) * sx) + "px";
    box.style.top = ((page.height - (y - page.bottom) - h) * sy) + "px";
    box.style.width = (w * sx) + "px";
    box.style.height = (h * sy) + "px";
    box.hidden = false;
  }

  img.addEventListener("click", function (event) {
    var rect = img.getBoundingClientRect();
    if (!(rect.width > 0 && rect.height > 0)) { return; }
    var fx = (event.clientX - rect.left) / rect.width;
    var fy = (event.clientY - rect.top) / rect.height;
    var w = Math.min(number(inputs.w, defaults.w) || defaults.w, page.width);
    var h = Math.min(number(inputs.h, defaults.h) || defaults.h, page.height);
    // The click in points (PDF y grows upwards), then the box centred on it, on the page.
    var cx = page.left + fx * page.width;
    var cy = page.bottom + (1 - fy) * page.height;
    var x = clamp(cx - w / 2, page.left, page.left + page.width - w);
    var y = clamp(cy - h / 2, page.bottom, page.bottom + page.height - h);
    inputs.page.value = "1";
    inputs.x.value = round(x);
    inputs.y.value = round(y);
    inputs.w.value = round(w);
    inputs.h.value = round(h);
    if (visible) { visible.checked = true; }
    draw();
  });

  ["page", "x", "y", "w", "h"].forEach(function (name) {
    inputs[name].addEventListener("input", draw);
  });
  [visible, invisible].forEach(function (radio) {
    if (radio) { radio.addEventListener("change", draw); }
  });
  window.addEventListener("resize", draw);
  if (img.complete) { draw(); } else { img.addEventListener("load", draw); }
}());
