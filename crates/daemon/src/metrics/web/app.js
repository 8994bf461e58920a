// Meridian status page: polls the daemon's JSON endpoints and draws SVG plots.
//
// No framework and no network access beyond this server (the page is embedded in the
// daemon and must work on air-gapped hosts). Data from the daemon is only ever put
// into the page as text (textContent, SVG attributes), never as HTML.
//
// When every plot shows real data, <body data-ready="1"> is set, and each plot's
// <figure data-points="N"> says how many points it drew: the browser test waits for
// those.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const COLOURS = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#b7791f", "#4a5568"];
  const STATUS_EVERY_MS = 5000;
  const HISTORY_EVERY_MS = 15000;
  const HEIGHT = 200;
  const MARGIN = { left: 58, right: 12, top: 10, bottom: 22 };

  let lastStatus = null;
  let lastHistory = null;
  let span = 0; // seconds shown; 0: all recorded history
  const colourOf = new Map();

  const $ = (id) => document.getElementById(id);

  function colour(key) {
    if (!colourOf.has(key)) {
      colourOf.set(key, COLOURS[colourOf.size % COLOURS.length]);
    }
    return colourOf.get(key);
  }

  // Seconds as a short string in a unit that suits the magnitude.
  function seconds(v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1) return v.toFixed(3) + " s";
    if (a >= 1e-3) return (v * 1e3).toFixed(3) + " ms";
    if (a >= 1e-6 || a === 0) return (v * 1e6).toFixed(1) + " µs";
    return (v * 1e9).toFixed(0) + " ns";
  }

  function interval(s) {
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    if (s < 172800) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  }

  function ago(t, now) {
    return t ? interval(Math.max(0, now - t)) + " ago" : "never";
  }

  function clock(t, withSeconds) {
    const d = new Date(t * 1000);
    const two = (n) => String(n).padStart(2, "0");
    const hm = two(d.getHours()) + ":" + two(d.getMinutes());
    return withSeconds ? hm + ":" + two(d.getSeconds()) : hm;
  }

  async function getJSON(path) {
    const r = await fetch(path, { cache: "no-store" });
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }

  function el(tag, attrs, textContent) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (textContent !== undefined) e.textContent = textContent;
    return e;
  }

  function svgEl(tag, attrs, textContent) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (textContent !== undefined) e.textContent = textContent;
    return e;
  }

  // ---- status ---------------------------------------------------------------

  const LEAP = ["none", "insert second", "delete second", "unsynchronised"];

  function renderStatus(s) {
    const card = $("state");
    const badge = $("state-badge");
    const detail = $("state-detail");
    const peer = s.sources.find((p) => p.source === s.system_peer);
    // The name alone when it is just the address (or the address and port).
    const peerName = !peer ? s.refid
      : peer.source.startsWith(peer.name) ? peer.source
      : peer.name + " (" + peer.source + ")";
    if (s.synchronized) {
      const pending = s.leap === 1 || s.leap === 2;
      card.className = "card state " + (pending ? "warn" : "ok");
      badge.textContent = "Synchronised";
      const what = s.sync_source === "local" ? "the local clock " + peerName : peerName;
      detail.textContent = "to " + what + " at stratum " + s.stratum + (pending ? " · leap second pending" : "");
    } else {
      card.className = "card state bad";
      badge.textContent = "Unsynchronised";
      const reachable = s.sources.filter((p) => p.reach !== 0).length;
      detail.textContent = s.sources.length === 0
        ? "no sources configured"
        : reachable + " of " + s.sources.length + " source(s) reachable, none selected yet";
    }
    $("sys-offset").textContent = seconds(s.offset);
    $("sys-frequency").textContent = s.frequency_ppm.toFixed(3) + " ppm";
    $("sys-jitter").textContent = seconds(s.sys_jitter);
    $("sys-rootdelay").textContent = seconds(s.root_delay);
    $("sys-rootdisp").textContent = seconds(s.root_dispersion);
    $("sys-poll").textContent = interval(s.poll);
    $("sys-leap").textContent = LEAP[s.leap] || String(s.leap);
    $("srv-responses").textContent = s.server.responses.toLocaleString("en");
    $("srv-drops").textContent = s.server.dropped.toLocaleString("en") + " / " + s.server.kods.toLocaleString("en");
    $("host").textContent = "Meridian " + s.version + " · " + s.host_system + " · up " + interval(s.time - s.started);
    $("updated").textContent = "· updated " + clock(s.time, true);

    const body = $("sources").tBodies[0];
    body.replaceChildren();
    if (s.sources.length === 0) {
      const td = el("td", { colspan: "11", class: "empty" }, "no sources");
      body.appendChild(el("tr")).appendChild(td);
    }
    for (const p of s.sources) {
      const tr = el("tr");
      tr.appendChild(el("td", { class: "tally" }, p.tally.trim() ? p.tally : "\u00a0"));
      const name = el("td");
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = colour(p.source);
      name.append(swatch, document.createTextNode(p.name));
      tr.appendChild(name);
      tr.appendChild(el("td", {}, p.source));
      tr.appendChild(el("td", { class: "num" }, String(p.stratum)));
      tr.appendChild(el("td", { class: "num" }, p.reach.toString(8)));
      tr.appendChild(el("td", { class: "num" }, interval(p.poll)));
      tr.appendChild(el("td", { class: "num" }, ago(p.last_sample, s.time)));
      tr.appendChild(el("td", { class: "num" }, seconds(p.offset)));
      tr.appendChild(el("td", { class: "num" }, seconds(p.delay)));
      tr.appendChild(el("td", { class: "num" }, seconds(p.jitter)));
      tr.appendChild(el("td", { class: "sel-" + p.selection }, p.selection.replace("_", " ")));
      body.appendChild(tr);
    }
  }

  function renderUnreachable(err) {
    $("state").className = "card state bad";
    $("state-badge").textContent = "No connection";
    $("state-detail").textContent = "cannot reach the daemon: " + err.message;
    $("updated").textContent = "· connection lost";
  }

  // ---- plots ----------------------------------------------------------------

  // About `count` round tick values covering [lo, hi].
  function niceTicks(lo, hi, count) {
    const raw = (hi - lo) / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    }
    return { ticks, step };
  }

  // Enough decimals to tell ticks apart: one more for steps of 2.5 × 10^n.
  function tickLabel(v, step) {
    const exp = Math.floor(Math.log10(step) + 1e-9);
    const mantissa = step / Math.pow(10, exp);
    const extra = Math.abs(mantissa - Math.round(mantissa)) > 1e-6 ? 1 : 0;
    return v.toFixed(Math.min(9, Math.max(0, -exp + extra)));
  }

  const TIME_STEPS = [10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200];

  // Draw `series` ([{key, colour, points: [[t, v], ...]}]) into the figure; returns
  // the number of points drawn.
  function drawPlot(fig, series, opts, t0, t1) {
    const svg = fig.querySelector("svg");
    const width = Math.max(240, Math.round(svg.getBoundingClientRect().width) || 560);
    svg.setAttribute("viewBox", "0 0 " + width + " " + HEIGHT);
    svg.replaceChildren();
    const x0 = MARGIN.left, x1 = width - MARGIN.right;
    const y0 = HEIGHT - MARGIN.bottom, y1 = MARGIN.top;

    const shown = series.map((s) => ({ ...s, points: s.points.filter((p) => p[0] >= t0 && p[0] <= t1 && isFinite(p[1])) }));
    const values = shown.flatMap((s) => s.points.map((p) => p[1]));
    const total = values.length;
    fig.dataset.points = String(total);
    fig.dataset.series = String(shown.filter((s) => s.points.length > 0).length);
    if (total === 0) {
      svg.appendChild(svgEl("text", { x: (x0 + x1) / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "nodata" }, "no data yet"));
      return 0;
    }
    let lo = Math.min(...values), hi = Math.max(...values);
    if (opts.fromZero) lo = Math.min(0, lo);
    if (hi - lo < opts.minRange) {
      const mid = (hi + lo) / 2;
      lo = opts.fromZero && lo >= 0 ? 0 : mid - opts.minRange / 2;
      hi = lo + opts.minRange;
    }
    const pad = (hi - lo) * 0.08;
    hi += pad;
    if (!(opts.fromZero && lo === 0)) lo -= pad;
    const { ticks, step } = niceTicks(lo, hi, 4);
    const xs = (t) => x0 + ((t - t0) / (t1 - t0)) * (x1 - x0);
    const ys = (v) => y0 - ((v - lo) / (hi - lo)) * (y0 - y1);

    for (const v of ticks) {
      const y = ys(v);
      svg.appendChild(svgEl("line", { x1: x0, x2: x1, y1: y, y2: y, class: v === 0 ? "zero" : "grid" }));
      svg.appendChild(svgEl("text", { x: x0 - 6, y: y + 3, "text-anchor": "end", class: "axis" }, tickLabel(v, step)));
    }
    const tstep = TIME_STEPS.find((s) => (t1 - t0) / s <= 6) || 86400;
    for (let t = Math.ceil(t0 / tstep) * tstep; t <= t1; t += tstep) {
      const x = xs(t);
      svg.appendChild(svgEl("line", { x1: x, x2: x, y1: y1, y2: y0, class: "grid" }));
      svg.appendChild(svgEl("text", { x: x, y: HEIGHT - 6, "text-anchor": "middle", class: "axis" }, clock(t, tstep < 60)));
    }
    svg.appendChild(svgEl("line", { x1: x0, x2: x1, y1: y0, y2: y0, class: "grid" }));

    for (const s of shown) {
      if (s.points.length === 0) continue;
      const g = svgEl("g", { "data-source": s.key });
      if (s.points.length > 1) {
        const pts = s.points.map((p) => xs(p[0]).toFixed(1) + "," + ys(p[1]).toFixed(1)).join(" ");
        g.appendChild(svgEl("polyline", { points: pts, fill: "none", stroke: s.colour, "stroke-width": 1.6, "stroke-linejoin": "round" }));
      }
      // Dots while there are few points, so sparse data (long polls) stays visible.
      if (s.points.length <= 90) {
        for (const p of s.points) {
          g.appendChild(svgEl("circle", { cx: xs(p[0]).toFixed(1), cy: ys(p[1]).toFixed(1), r: 2.4, fill: s.colour }));
        }
      }
      svg.appendChild(g);
    }
    return total;
  }

  function renderHistory(h) {
    const now = h.time;
    let first = now;
    for (const s of h.sources) if (s.points.length) first = Math.min(first, s.points[0][0]);
    if (h.system.length) first = Math.min(first, h.system[0][0]);
    // "all": the recorded span with a little room on the left, at least half a minute.
    const t1 = now;
    const t0 = span > 0 ? now - span : now - Math.max(now - first, 30) * 1.04;

    const legend = $("legend");
    legend.replaceChildren();
    const perSource = (index, scale) => h.sources.map((s) => ({
      key: s.source,
      colour: colour(s.source),
      points: s.points.map((p) => [p[0], p[index] * scale]),
    }));
    for (const s of h.sources) {
      const item = el("span");
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = colour(s.source);
      item.append(swatch, document.createTextNode(s.name + (s.active ? "" : " (removed)")));
      legend.appendChild(item);
    }
    const drawn = [
      drawPlot($("plot-offset"), perSource(1, 1e3), { fromZero: false, minRange: 0.01 }, t0, t1),
      drawPlot($("plot-delay"), perSource(2, 1e3), { fromZero: true, minRange: 0.01 }, t0, t1),
      drawPlot($("plot-jitter"), perSource(3, 1e3), { fromZero: true, minRange: 0.01 }, t0, t1),
      drawPlot($("plot-frequency"), [{ key: "system", colour: "#14202e", points: h.system.map((p) => [p[0], p[2]]) }],
        { fromZero: false, minRange: 0.01 }, t0, t1),
    ];
    document.body.dataset.ready = drawn.every((n) => n > 0) ? "1" : "0";
  }

  // ---- polling --------------------------------------------------------------

  async function pollStatus() {
    try {
      lastStatus = await getJSON("/api/status");
      renderStatus(lastStatus);
    } catch (e) {
      renderUnreachable(e);
    }
    setTimeout(pollStatus, STATUS_EVERY_MS);
  }

  async function pollHistory() {
    try {
      lastHistory = await getJSON("/api/history");
      renderHistory(lastHistory);
    } catch (e) {
      // The status poll reports a lost connection; keep the last plots.
    }
    setTimeout(pollHistory, HISTORY_EVERY_MS);
  }

  for (const b of document.querySelectorAll("#range button")) {
    b.addEventListener("click", () => {
      span = Number(b.dataset.span);
      for (const o of document.querySelectorAll("#range button")) o.classList.toggle("on", o === b);
      if (lastHistory) renderHistory(lastHistory);
    });
  }
  window.addEventListener("resize", () => {
    if (lastHistory) renderHistory(lastHistory);
  });

  pollStatus();
  pollHistory();
})();
