// edge-xemo emotion timeline: shows the hovered (or clicked: pinned) window's explanation and evidence; zooms the axis.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var wins = data.windows, tracks = document.getElementById("tracks"), cursor = document.getElementById("cursor");
  var detail = document.getElementById("detail"), pinned = null, shown = null;

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function clock(t) { var m = Math.floor(t / 60), s = (t - 60 * m).toFixed(1); return m + ":" + (s < 10 ? "0" : "") + s; }

  function at(t) {  // the window whose slot holds t (else the nearest)
    var lo = 0, hi = wins.length - 1, best = 0;
    while (lo <= hi) { var mid = (lo + hi) >> 1; if (wins[mid].s[0] <= t) { best = mid; lo = mid + 1; } else hi = mid - 1; }
    if (best + 1 < wins.length && t - wins[best].s[1] > wins[best + 1].s[0] - t) best += 1;
    return best;
  }

  function show(i) {
    if (i === shown) return;
    shown = i;
    var w = wins[i];
    cursor.style.left = (100 * (w.s[0] + w.s[1]) / 2 / data.duration) + "%";
    cursor.style.display = "block";
    var prev = tracks.querySelector("rect.win.sel");
    if (prev) prev.classList.remove("sel");
    var rect = tracks.querySelector('rect.win[data-i="' + i + '"]');
    if (rect) rect.classList.add("sel");
    detail.textContent = "";
    detail.dataset.window = i;
    var head = clock(w.t[0]) + "-" + clock(w.t[1]) + "  ";
    head += w.label ? w.label + " (" + (w.outcome || "confident") + ", confidence " + Number(w.confidence).toFixed(2) + ")" : "no label";
    detail.appendChild(el("h2", head + (pinned === i ? "  [pinned: click to release]" : "")));
    if (w.reason) detail.appendChild(el("p", "Why not confident: " + w.reason, "reason"));
    detail.appendChild(el("p", w.text || (w.status.length ? "status: " + w.status.join(", ") : "nothing to explain"), "text"));
    if (w.carried_by.length) detail.appendChild(el("p", "Carried by: " + w.carried_by.join("; ")));
    var sources = Object.keys(w.evidence);
    if (sources.length) {
      var table = el("table", null, "evidence");
      var hr = el("tr"); ["source", "weight", "points to", "its cues"].forEach(function (h) { hr.appendChild(el("th", h)); });
      table.appendChild(hr);
      sources.forEach(function (src) {
        var ev = w.evidence[src], tr = el("tr");
        tr.appendChild(el("td", src));
        tr.appendChild(el("td", ev.weight === null ? "-" : String(ev.weight)));
        tr.appendChild(el("td", ev.top.map(function (kv) { return kv[0] + " " + kv[1].toFixed(2); }).join(", ")));
        tr.appendChild(el("td", ev.cues.join("; ")));
        table.appendChild(tr);
      });
      detail.appendChild(table);
    }
    detail.appendChild(el("p", "Seen: " + (w.visual.join("; ") || "-") + "  |  heard: " + (w.auditory.join("; ") || "-")));
    if (w.words) detail.appendChild(el("p", "Words: " + w.words, "words-said"));
  }

  function fromEvent(ev) {
    var box = tracks.getBoundingClientRect();
    return at(data.duration * (ev.clientX - box.left) / box.width);
  }
  tracks.addEventListener("mousemove", function (ev) { if (pinned === null) show(fromEvent(ev)); });
  tracks.addEventListener("click", function (ev) {
    var i = fromEvent(ev);
    pinned = pinned === i ? null : i;
    shown = null;
    show(i);
  });
  document.getElementById("zoom").addEventListener("input", function (ev) {
    tracks.style.width = (100 * Number(ev.target.value)) + "%";
  });
})();
