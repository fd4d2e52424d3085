// prognos dashboard: draws the charts whose data the page carries in JSON <script> blocks
// (never executed), with the vendored uPlot. No inline scripts: the CSP allows only these files.
(function () {
  "use strict";
  var COLORS = ["#1f5fbf", "#b3261e", "#2e7d32", "#a15c00", "#6a1b9a", "#00838f", "#5d4037", "#c2185b"];

  function data(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function width(el) { return Math.max(280, el.clientWidth || 600); }

  function draw(el, spec) {
    el.innerHTML = "";
    if (!spec.x.length) { el.textContent = "No data yet."; return null; }
    var series = [{ label: spec.xLabel || "time" }];
    var columns = [spec.x];
    spec.series.forEach(function (s, i) {
      series.push({
        label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: s.width || 2,
        dash: s.dash || undefined, spanGaps: true, points: { show: spec.x.length < 60 },
      });
      columns.push(s.values);
    });
    var opts = {
      width: width(el), height: spec.height || 240, series: series,
      scales: { x: { time: !!spec.time } },
      axes: [{ label: spec.xLabel || "" }, { label: spec.yLabel || "" }],
      legend: { live: true },
    };
    if (spec.yRange) { opts.scales.y = { range: spec.yRange }; }
    var plot = new uPlot(opts, columns, el);
    window.addEventListener("resize", function () { plot.setSize({ width: width(el), height: opts.height }); });
    return plot;
  }

  function repeat(value, n) { var out = []; for (var i = 0; i < n; i++) out.push(value); return out; }

  function historyCharts() {
    var h = data("history-data");
    if (!h) return;
    var p = document.getElementById("chart-probability");
    var series = [{ label: "failure probability", values: h.probability, color: COLORS[1] }];
    if (h.threshold !== null) {
      series.push({ label: "alert threshold", values: repeat(h.threshold, h.x.length), color: "#14213d", dash: [6, 4], width: 1 });
    }
    if (p) draw(p, { x: h.x, xLabel: "time", yLabel: "P(fail within H)", series: series, yRange: [0, 1] });
    var r = document.getElementById("chart-rul");
    if (r) draw(r, { x: h.x, xLabel: "time", yLabel: "RUL", series: [
      { label: "RUL", values: h.rul, color: COLORS[0] },
      { label: "interval lower", values: h.lower, color: COLORS[0], dash: [4, 4], width: 1 },
      { label: "interval upper (open above the cap: gap)", values: h.upper, color: COLORS[0], dash: [4, 4], width: 1 },
    ] });
  }

  function sensorCharts() {
    var s = data("sensor-data");
    var select = document.getElementById("sensor-select");
    if (!s || !select) return;
    function show() {
      var name = select.value;
      draw(document.getElementById("chart-raw"), { x: s.x, xLabel: "time", yLabel: name + " (raw)", series: [
        { label: name, values: s.raw[name] || [], color: COLORS[0] }] });
      var z = document.getElementById("chart-normalised");
      if (z) {
        if (s.normalised[name]) {
          draw(z, { x: s.x, xLabel: "time", yLabel: name + " (z within regime)", series: [
            { label: name + " normalised", values: s.normalised[name], color: COLORS[3] }] });
        } else {
          z.textContent = "The model does not use " + name + " (constant within its regimes).";
        }
      }
    }
    select.addEventListener("change", show);
    show();
  }

  function seriesCharts() {
    document.querySelectorAll("[data-series]").forEach(function (el) {
      var spec = data(el.getAttribute("data-series"));
      if (spec) draw(el, spec);
    });
  }

  function init() { historyCharts(); sensorCharts(); seriesCharts(); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
