/* saliency-r1 report: paints the embedded maps onto canvases. No network, no eval, no innerHTML. */
(function () {
  "use strict";
  var TITLES = { holistic: "Holistic map", think: "Thinking map", answer: "Answer map",
                 attn: "Attention map" };

  function bytes(b64) {
    var bin = atob(b64), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function fmt(x) {
    if (x === 0) return "0";
    var a = Math.abs(x);
    return (a >= 1000 || a < 0.01) ? x.toExponential(1) : String(+x.toPrecision(3));
  }
  function visible(tok) {
    var t = tok.replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
    return t.trim() === "" ? "\u2423".repeat(Math.max(1, t.length)) : t;
  }

  var LUT = bytes(JSON.parse(document.getElementById("sr-lut").textContent));

  function Report(root) {
    var data = JSON.parse(root.querySelector("script.sr-data").textContent);
    var figs = root.querySelectorAll(".sr-figure");
    var toks = Array.prototype.slice.call(root.querySelectorAll(".sr-tok"));
    var views = Array.prototype.slice.call(root.querySelectorAll(".sr-view"));
    var caption = root.querySelector(".sr-caption");
    var shared = root.querySelector(".sr-shared");
    var ims = data.images.map(function (im, i) {
      var v = {};
      Object.keys(im.views).forEach(function (name) {
        var d = im.views[name];
        v[name] = { q: bytes(d.q), lo: d.lo, hi: d.hi };
      });
      return { w: im.w, h: im.h, q: bytes(im.q), lo: im.lo, hi: im.hi, views: v,
               top: im.hi.length ? Math.max.apply(null, im.hi) : 0,
               canvas: figs[i].querySelector("canvas"), loEl: figs[i].querySelector(".sr-lo"),
               hiEl: figs[i].querySelector(".sr-hi") };
    });
    var pinned = data.initial, focusK = 0;

    function source(im, key) {
      var parts = key.split(":"), n = im.w * im.h;
      if (parts[0] === "token") {
        var k = +parts[1];
        return { q: im.q.subarray(k * n, (k + 1) * n), lo: im.lo[k], hi: im.hi[k],
                 top: shared.checked ? Math.max(im.top, im.hi[k]) : im.hi[k] };
      }
      var v = im.views[parts[1]];
      return v ? { q: v.q, lo: v.lo, hi: v.hi, top: v.hi } : null;
    }

    function paint(im, src) {
      var ctx = im.canvas.getContext("2d");
      ctx.clearRect(0, 0, im.w, im.h);
      if (!src) { im.loEl.textContent = "\u2013"; im.hiEl.textContent = "\u2013"; return; }
      var out = ctx.createImageData(im.w, im.h), px = out.data;
      var span = src.hi - src.lo, range = src.top - src.lo;
      for (var i = 0; i < src.q.length; i++) {
        var t = range > 0 ? (src.q[i] / 255) * span / range : 0;
        var c = Math.round(Math.min(1, Math.max(0, t)) * 255);
        px[4 * i] = LUT[3 * c]; px[4 * i + 1] = LUT[3 * c + 1]; px[4 * i + 2] = LUT[3 * c + 2];
        px[4 * i + 3] = Math.round(255 * (0.18 + 0.82 * Math.sqrt(Math.min(1, Math.max(0, t)))));
      }
      ctx.putImageData(out, 0, 0);
      im.loEl.textContent = fmt(src.lo);
      im.hiEl.textContent = fmt(src.top);
    }

    function describe(key) {
      var parts = key.split(":");
      if (parts[0] !== "token") return (TITLES[parts[1]] || parts[1]) + " of the whole response";
      var k = +parts[1];
      return "Token " + k + " \u201c" + visible(data.tokens[k]) + "\u201d \u00b7 image share " +
        (data.mass[k] !== undefined ? data.mass[k].toFixed(2) : "0");
    }

    function show(key) {
      if (!key) return;
      ims.forEach(function (im) { paint(im, source(im, key)); });
      root.setAttribute("data-showing", key);
      caption.textContent = describe(key) + (key === pinned ? "" : "  (preview)");
    }

    function pin(key) {
      pinned = key;
      toks.forEach(function (t) { t.classList.toggle("sr-sel", "token:" + t.dataset.k === key); });
      views.forEach(function (b) {
        b.setAttribute("aria-pressed", String("view:" + b.dataset.view === key));
      });
      show(key);
    }

    function focusToken(k) {
      if (k < 0 || k >= toks.length) return;
      toks[focusK].tabIndex = -1;
      focusK = k;
      toks[k].tabIndex = 0;
      toks[k].focus();
    }

    toks.forEach(function (t, k) {
      var key = "token:" + t.dataset.k;
      t.addEventListener("mouseenter", function () { show(key); });
      t.addEventListener("mouseleave", function () { show(pinned); });
      t.addEventListener("focus", function () { toks[focusK].tabIndex = -1; focusK = k;
                                                 t.tabIndex = 0; show(key); });
      t.addEventListener("blur", function () { show(pinned); });
      t.addEventListener("click", function () { pin(key); });
      t.addEventListener("keydown", function (e) {
        var step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
        if (step) { e.preventDefault(); focusToken(k + step); }
        else if (e.key === "Home") { e.preventDefault(); focusToken(0); }
        else if (e.key === "End") { e.preventDefault(); focusToken(toks.length - 1); }
        else if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pin(key); }
        else if (e.key === "Escape") { pin(data.initial); }
      });
    });
    views.forEach(function (b) {
      b.addEventListener("click", function () { pin("view:" + b.dataset.view); });
    });
    shared.addEventListener("change", function () { show(root.getAttribute("data-showing")); });
    root.querySelector(".sr-smooth").addEventListener("change", function (e) {
      root.classList.toggle("sr-smooth-on", e.target.checked);
    });
    root.querySelector(".sr-opacity").addEventListener("input", function (e) {
      ims.forEach(function (im) { im.canvas.style.opacity = String(e.target.value / 100); });
    });
    pin(data.initial);
  }

  Array.prototype.forEach.call(document.querySelectorAll(".sr-report"), Report);
})();
