/* freshet console (docs/console.md): plain JS, no build step. Reads
 * /v1/status (the graph and each node's state), /admin/series (charts),
 * /admin/deadletters/..., /admin/backfills and follows /v1/changes. */
(function () {
  "use strict";

  var KINDS = ["source", "dataset", "model", "cache", "route"];
  var NODE_W = 150, NODE_H = 36, COL_GAP = 34, ROW_GAP = 10, PAD = 6;
  var HEALTH_MARK = { ok: "\u2713", warning: "!", failing: "\u2717", unknown: "?" };

  var state = {
    status: null,
    selected: null,        /* "pipeline|node id" */
    dlqDataset: null,
    dlqCount: null,
    dlqNext: null,
    key: sessionStorage.getItem("freshet-key") || "",
    charts: null,
    backfill: null,
    live: false,
    stale: {}              /* "pipeline|path" -> when a route.stale event named it (ms) */
  };
  var STALE_MS = 10 * 60 * 1000;

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "class") e.className = attrs[k]; else e.setAttribute(k, attrs[k]);
    }
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }

  /* ---- HTTP ---------------------------------------------------------------------- */

  function api(method, path, body) {
    var opts = { method: method, headers: {}, credentials: "same-origin" };
    if (state.key) opts.headers["Authorization"] = "Bearer " + state.key;
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(path, opts).then(function (r) {
      if (r.status === 401 || r.status === 403) needKey(r.status);
      return r.text().then(function (t) {
        var j = null;
        try { j = t ? JSON.parse(t) : null; } catch (e) { j = null; }
        return { status: r.status, body: j };
      });
    });
  }

  function problem(res) {
    var d = res.body && res.body.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) {
      return d.map(function (x) { return (x.loc || []).join(".") + ": " + x.msg; }).join("; ");
    }
    return "HTTP " + res.status;
  }

  function needKey(status) {
    $("keyform").hidden = false;
    notice(status === 401 ? "This api asks for a key: enter an admin key above."
                          : "This key lacks the admin role the console needs.");
  }

  function notice(text) {
    var n = $("notice");
    n.hidden = !text;
    n.textContent = text || "";
  }

  /* ---- status and graphs --------------------------------------------------------- */

  function loadStatus() {
    return api("GET", "/v1/status").then(function (res) {
      if (res.status !== 200 || !res.body) {
        if (res.status === 404) notice("This api has no /v1/status: the graphs need it.");
        return;
      }
      notice("");
      state.status = res.body;
      renderDaemons(res.body.daemons || []);
      renderPipelines(res.body.pipelines || []);
      fillSelects(res.body.pipelines || []);
      renderSelected();
      var n = findDataset(state.dlqDataset);
      var count = n && n.state ? n.state.dead_letters : null;
      if (count !== state.dlqCount) {
        state.dlqCount = count;
        loadDeadLetters(false);
      }
    }).catch(function () { setLive(false, "api unreachable"); });
  }

  function renderDaemons(daemons) {
    var ul = $("daemons");
    ul.textContent = "";
    daemons.forEach(function (d) {
      var h = d.health || (d.report_age_s != null && d.report_age_s > 15 ? "failing" : "ok");
      var li = el("li", { "class": "h-" + h },
        (d.daemon || "daemon") + " " + (d.instance || "") + " " + (HEALTH_MARK[h] || "") +
        (d.version ? " v" + d.version : "") +
        (d.uptime_s != null ? " up " + fmtDur(d.uptime_s) : "") +
        (d.rss_bytes != null ? " " + Math.round(d.rss_bytes / 1048576) + " MiB" : ""));
      ul.appendChild(li);
    });
    if (!daemons.length) ul.appendChild(el("li", {}, "no ingest or loader reports"));
  }

  function layout(p) {
    var cols = {};
    KINDS.forEach(function (k) { cols[k] = []; });
    p.nodes.forEach(function (n) { (cols[n.kind] || (cols[n.kind] = [])).push(n); });
    var pos = {}, rows = 0;
    KINDS.forEach(function (k, ci) {
      cols[k].forEach(function (n, ri) {
        pos[n.id] = { x: PAD + ci * (NODE_W + COL_GAP), y: PAD + ri * (NODE_H + ROW_GAP), col: ci };
      });
      rows = Math.max(rows, cols[k].length);
    });
    return { pos: pos, w: PAD * 2 + KINDS.length * NODE_W + (KINDS.length - 1) * COL_GAP,
             h: PAD * 2 + Math.max(1, rows) * (NODE_H + ROW_GAP) - ROW_GAP };
  }

  function short(s, n) { return s.length > n ? s.slice(0, n - 1) + "\u2026" : s; }

  function renderPipelines(pipelines) {
    var root = $("pipelines");
    var focusId = document.activeElement && document.activeElement.getAttribute("data-key");
    root.textContent = "";
    pipelines.forEach(function (p) {
      var box = el("div", { "class": "pipeline", "data-pipeline": p.name });
      box.appendChild(el("h3", {}, p.name));
      var L = layout(p);
      var s = svg("svg", { viewBox: "0 0 " + L.w + " " + L.h, width: L.w, height: L.h, role: "group",
                           "aria-label": "pipeline " + p.name });
      (p.edges || []).forEach(function (e) {
        var a = L.pos[e.from], b = L.pos[e.to];
        if (!a || !b) return;
        var back = b.col <= a.col;
        var x1 = back ? a.x : a.x + NODE_W, y1 = a.y + NODE_H / 2;
        var x2 = back ? b.x + NODE_W : b.x, y2 = b.y + NODE_H / 2;
        var dx = Math.max(20, Math.abs(x2 - x1) / 2);
        var d = back ? "M" + x1 + "," + y1 + " C" + (x1 - dx) + "," + (y1 + 30) + " " + (x2 + dx) + "," + (y2 + 30) + " " + x2 + "," + y2
                     : "M" + x1 + "," + y1 + " C" + (x1 + dx) + "," + y1 + " " + (x2 - dx) + "," + y2 + " " + x2 + "," + y2;
        s.appendChild(svg("path", { d: d, "class": "edge" + (back ? " back" : ""), "aria-hidden": "true" }));
      });
      p.nodes.forEach(function (n) {
        var at = L.pos[n.id];
        var h = n.health || "unknown";
        var key = p.name + "|" + n.id;
        var staleAt = n.kind === "route" ? state.stale[p.name + "|" + n.path] : 0;
        var stale = staleAt && Date.now() - staleAt < STALE_MS;
        if (stale && h === "ok") h = "warning";
        var g = svg("g", { "class": "node h-" + h + (state.selected === key ? " selected" : ""),
                           transform: "translate(" + at.x + "," + at.y + ")", tabindex: "0", role: "button",
                           "data-key": key, "data-kind": n.kind, "data-name": n.name, "data-health": h,
                           "aria-label": n.kind + " " + n.name + ", " + h + (stale ? ", served data older than its max_age" : "") +
                                         (state.selected === key ? ", selected" : "") });
        var title = svg("title");
        title.textContent = n.kind + " " + n.name + " (" + h + (stale ? ": data older than its max_age" : "") + ")";
        g.appendChild(title);
        g.appendChild(svg("rect", { width: NODE_W, height: NODE_H }));
        var t1 = svg("text", { x: 6, y: 12, "class": "kind" });
        t1.textContent = n.kind + (n.type ? " \u00b7 " + n.type : "") + "  " + (HEALTH_MARK[h] || "");
        g.appendChild(t1);
        var t2 = svg("text", { x: 6, y: 28 });
        t2.textContent = short(n.name, 24);
        g.appendChild(t2);
        g.addEventListener("click", function () { select(key); });
        g.addEventListener("keydown", function (ev) {
          if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(key); }
        });
        s.appendChild(g);
      });
      box.appendChild(s);
      root.appendChild(box);
    });
    if (focusId) {
      var again = root.querySelector('[data-key="' + CSS.escape(focusId) + '"]');
      if (again) again.focus();
    }
  }

  function findNode(key) {
    if (!state.status || !key) return null;
    var i = key.indexOf("|"), pn = key.slice(0, i), id = key.slice(i + 1);
    var p = (state.status.pipelines || []).filter(function (x) { return x.name === pn; })[0];
    return p ? { pipeline: p, node: p.nodes.filter(function (n) { return n.id === id; })[0] } : null;
  }

  function findDataset(qname) {
    if (!state.status || !qname) return null;
    var found = null;
    (state.status.pipelines || []).forEach(function (p) {
      p.nodes.forEach(function (n) { if (n.kind === "dataset" && n.qname === qname) found = n; });
    });
    return found;
  }

  function select(key) {
    state.selected = key;
    document.querySelectorAll(".node.selected").forEach(function (g) { g.classList.remove("selected"); });
    var g = document.querySelector('.node[data-key="' + CSS.escape(key) + '"]');
    if (g) g.classList.add("selected");
    renderSelected();
    var f = findNode(key);
    if (f && f.node && f.node.kind === "dataset" && f.node.qname) {
      $("dlq-ds").value = f.node.qname;
      $("series-ds").value = f.node.qname;
      setDlqDataset(f.node.qname);
      loadSeries();
    }
  }

  function fmtVal(v) {
    if (v === null || v === undefined) return "\u2014";
    if (typeof v === "object") return JSON.stringify(v);
    if (typeof v === "number" && !Number.isInteger(v)) return v.toFixed(2);
    return String(v);
  }

  function fmtDur(s) {
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  function renderSelected() {
    var box = $("node");
    var f = findNode(state.selected);
    if (!f || !f.node) return;
    var n = f.node;
    box.textContent = "";
    box.appendChild(el("h3", {}, f.pipeline.name + " \u00b7 " + n.kind + " " + n.name));
    var dl = el("dl");
    function add(k, v) { dl.appendChild(el("dt", {}, k)); dl.appendChild(el("dd", {}, fmtVal(v))); }
    add("health", n.health);
    ["type", "qname", "table", "format", "handler", "role"].forEach(function (k) { if (n[k] !== undefined) add(k, n[k]); });
    var st = n.state;
    if (st && typeof st === "object") {
      Object.keys(st).forEach(function (k) {
        var v = st[k];
        if (v && typeof v === "object" && !Array.isArray(v)) {
          Object.keys(v).forEach(function (k2) { add(k + "." + k2, v[k2]); });
        } else add(k, v);
      });
    } else add("state", "not reported");
    box.appendChild(dl);
  }

  function fillSelects(pipelines) {
    var dsSel = $("dlq-ds"), seriesSel = $("series-ds"), bfSel = $("bf-source");
    var datasets = [], sources = [];
    pipelines.forEach(function (p) {
      p.nodes.forEach(function (n) {
        if (n.kind === "dataset" && n.qname) datasets.push({ q: n.qname, dl: n.state ? n.state.dead_letters : null });
        if (n.kind === "source" && n.type === "http_json") sources.push(p.name + "." + n.name);
      });
    });
    function sync(sel, values, label, keepFirst) {
      var have = Array.prototype.map.call(sel.options, function (o) { return o.value; });
      var want = (keepFirst ? [""] : []).concat(values.map(function (v) { return v.value; }));
      if (have.join("\n") === want.join("\n")) {
        values.forEach(function (v, i) { sel.options[i + (keepFirst ? 1 : 0)].textContent = label(v); });
        return;
      }
      var cur = sel.value;
      while (sel.options.length > (keepFirst ? 1 : 0)) sel.remove(sel.options.length - 1);
      values.forEach(function (v) { sel.appendChild(el("option", { value: v.value }, label(v))); });
      if (want.indexOf(cur) >= 0) sel.value = cur;
    }
    sync(dsSel, datasets.map(function (d) { return { value: d.q, dl: d.dl }; }),
         function (v) { return v.value + (v.dl ? " (" + v.dl + ")" : ""); }, false);
    sync(seriesSel, datasets.map(function (d) { return { value: d.q }; }), function (v) { return v.value; }, true);
    sync(bfSel, sources.map(function (s) { return { value: s }; }), function (v) { return v.value; }, false);
    if (!state.dlqDataset && datasets.length) {
      var withDl = datasets.filter(function (d) { return d.dl > 0; })[0];
      setDlqDataset((withDl || datasets[0]).q);
      dsSel.value = state.dlqDataset;
    }
  }

  /* ---- charts -------------------------------------------------------------------- */

  function chartOpts(title, series, width) {
    return { title: "", width: width, height: 150, legend: { show: true },
             scales: { x: { time: true } },
             axes: [{}, { size: 50 }],
             series: [{}].concat(series) };
  }

  function loadSeries() {
    var ds = $("series-ds").value;
    api("GET", "/admin/series" + (ds ? "?dataset=" + encodeURIComponent(ds) : "")).then(function (res) {
      if (res.status !== 200 || !res.body || typeof uPlot === "undefined") return;
      var b = res.body;
      var before = JSON.stringify(state.stale);
      (b.stale_routes || []).forEach(function (x) {
        state.stale[x.pipeline + "|" + x.path] = Date.parse(x.at);
      });
      if (JSON.stringify(state.stale) !== before && state.status) renderPipelines(state.status.pipelines || []);
      var fresh = [b.minutes, b.freshness_p50_s, b.freshness_p99_s];
      var rows = [b.minutes, b.rows_per_s];
      var width = Math.max(280, $("chart-fresh").clientWidth || 340);
      if (!state.charts) {
        state.charts = {
          fresh: new uPlot(chartOpts("freshness", [
            { label: "p50 s", stroke: "#1a5fd0", width: 1.5, points: { show: true, size: 5 } },
            { label: "p99 s", stroke: "#c62828", width: 1.5, points: { show: true, size: 5 } }], width), fresh, $("chart-fresh")),
          rows: new uPlot(chartOpts("rows", [
            { label: "rows/s", stroke: "#1f8a4c", fill: "rgba(31,138,76,0.12)", width: 1.5, points: { show: true, size: 5 } }], width), rows, $("chart-rows"))
        };
      } else {
        state.charts.fresh.setData(fresh);
        state.charts.rows.setData(rows);
      }
    });
  }

  /* ---- dead letters -------------------------------------------------------------- */

  function setDlqDataset(q) {
    if (q === state.dlqDataset) return;
    state.dlqDataset = q;
    var n = findDataset(q);
    state.dlqCount = n && n.state ? n.state.dead_letters : null;
    loadDeadLetters(false);
  }

  function dlqMsg(text, err) {
    var m = $("dlq-msg");
    m.textContent = text || "";
    m.className = "msg" + (err ? " err" : "");
  }

  function entryTime(id) {
    var ms = parseInt(id.split("-")[0], 10);
    return isNaN(ms) ? id : new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function loadDeadLetters(more) {
    var q = state.dlqDataset;
    if (!q) return;
    var url = "/admin/deadletters/" + encodeURIComponent(q) + "?limit=50" +
              (more && state.dlqNext ? "&before=" + encodeURIComponent(state.dlqNext) : "");
    api("GET", url).then(function (res) {
      if (q !== state.dlqDataset) return;
      if (res.status !== 200) { dlqMsg(problem(res), true); return; }
      var body = $("dlq-body");
      if (!more) body.textContent = "";
      res.body.items.forEach(function (it) { body.appendChild(dlqRow(q, it)); });
      state.dlqNext = res.body.next;
      $("dlq-more").hidden = !res.body.next;
      $("dlq-count").textContent = (res.body.total != null ? res.body.total : "?") + " dead letter(s) in " + q;
      if (!more && !res.body.items.length) {
        var tr = el("tr");
        tr.appendChild(el("td", { colspan: "5", "class": "muted" }, "No dead letters."));
        body.appendChild(tr);
      }
    });
  }

  function dlqRow(q, it) {
    var tr = el("tr", { "data-id": it.id });
    tr.appendChild(el("td", {}, entryTime(it.id)));
    tr.appendChild(el("td", {}, it.kind || ""));
    tr.appendChild(el("td", {}, it.reason || ""));
    var rec = it.raw || (it.field ? it.field + " = " + (it.value || "") : "") ||
              (it.payload_bytes ? "batch " + (it.batch || "") + " (" + it.payload_bytes + " bytes)" : "");
    var where = (it.file ? it.file : "") + (it.line && it.line !== "0" ? ":" + it.line : "");
    var td = el("td", { "class": "rec" });
    td.appendChild(el("div", {}, rec));
    if (where) td.appendChild(el("div", { "class": "muted" }, where));
    var taId = "fix-" + it.id;
    td.appendChild(el("label", { "for": taId, "class": "muted" }, "Row to re-drive (JSON; empty = as it was)"));
    var ta = el("textarea", { id: taId, spellcheck: "false" });
    if (it.kind === "row" && it.raw && /^\s*\{/.test(it.raw)) ta.value = it.raw;
    td.appendChild(ta);
    tr.appendChild(td);
    var act = el("td");
    var rd = el("button", { type: "button", "class": "redrive", "aria-label": "Re-drive dead letter " + it.id }, "Re-drive");
    var dc = el("button", { type: "button", "class": "danger discard", "aria-label": "Discard dead letter " + it.id }, "Discard");
    rd.addEventListener("click", function () {
      var body;
      var text = ta.value.trim();
      if (text) { /* the row as corrected here (or as it was, for a refused row) */
        try { body = { row: JSON.parse(text) }; } catch (e) { dlqMsg("The row is not valid JSON: " + e.message, true); ta.focus(); return; }
      }
      rd.disabled = true;
      api("POST", "/admin/deadletters/" + encodeURIComponent(q) + "/" + encodeURIComponent(it.id) + "/redrive", body)
        .then(function (res) {
          rd.disabled = false;
          if (res.status === 200) {
            dlqMsg("Re-driven: " + it.id + " is batch " + res.body.batch + " (" + res.body.rows + " row(s)) in the stream again.");
            tr.remove();
          } else dlqMsg("Re-drive of " + it.id + " refused: " + problem(res), true);
        });
    });
    dc.addEventListener("click", function () {
      dc.disabled = true;
      api("DELETE", "/admin/deadletters/" + encodeURIComponent(q) + "/" + encodeURIComponent(it.id)).then(function (res) {
        dc.disabled = false;
        if (res.status === 204) { dlqMsg("Discarded " + it.id + "."); tr.remove(); }
        else dlqMsg("Discard of " + it.id + " refused: " + problem(res), true);
      });
    });
    act.appendChild(rd);
    act.appendChild(document.createTextNode(" "));
    act.appendChild(dc);
    tr.appendChild(act);
    return tr;
  }

  /* ---- backfill ------------------------------------------------------------------ */

  function isoHour(ms) { return new Date(Math.floor(ms / 3600000) * 3600000).toISOString().replace(/\.\d+Z$/, "Z"); }

  function startBackfill(ev) {
    ev.preventDefault();
    var src = $("bf-source").value, i = src.indexOf(".");
    if (i < 0) { $("bf-text").textContent = "Pick an http_json source."; return; }
    $("bf-start").disabled = true;
    api("POST", "/admin/backfills", { pipeline: src.slice(0, i), source: src.slice(i + 1),
                                      from: $("bf-from").value.trim(), to: $("bf-to").value.trim() })
      .then(function (res) {
        $("bf-start").disabled = false;
        if (res.status !== 202) { $("bf-text").textContent = "Backfill refused: " + problem(res); return; }
        state.backfill = res.body.id;
        $("bf-progress").value = 0;
        $("bf-text").textContent = "Backfill " + res.body.id + " queued.";
        pollBackfill(res.body.id);
      });
  }

  function pollBackfill(id) {
    if (state.backfill !== id) return;
    api("GET", "/admin/backfills/" + id).then(function (res) {
      if (state.backfill !== id) return;
      if (res.status !== 200) { $("bf-text").textContent = "Backfill " + id + ": " + problem(res); return; }
      var b = res.body;
      var pct = Math.round(b.percent || 0);
      $("bf-progress").value = pct;
      $("bf-text").textContent = "Backfill " + b.pipeline + "." + b.source + ": " + b.state + ", " + pct + " %" +
        (b.windows_total != null ? ", windows " + (b.windows_done || 0) + "/" + b.windows_total : "") +
        (b.rows != null ? ", " + b.rows + " rows" : "") + (b.reason ? " (" + b.reason + ")" : "");
      if (b.state !== "done" && b.state !== "failed") setTimeout(function () { pollBackfill(id); }, 700);
    });
  }

  /* ---- live ---------------------------------------------------------------------- */

  function setLive(on, text) {
    state.live = on;
    var l = $("live");
    l.className = "live " + (on ? "on" : "off");
    l.textContent = text;
  }

  var statusTimer = null;
  function soon() {
    if (statusTimer) return;
    statusTimer = setTimeout(function () { statusTimer = null; loadStatus(); }, 400);
  }

  function addChange(type, data) {
    var ol = $("changes");
    var d = {};
    try { d = JSON.parse(data); } catch (e) { d = {}; }
    var what = d.dataset || d.model || d.cache || (d.route ? d.pipeline + " " + d.path + " " + Math.round(d.age_s) + " s old" : "");
    var li = el("li", {}, (d.ts || new Date().toISOString()).replace("T", " ") + "  " + type + "  " + what +
                (d.loaded != null ? "  " + d.loaded + " rows" : "") +
                (d.rejected && d.rejected.length ? "  " + d.rejected.length + " rejected" : ""));
    ol.insertBefore(li, ol.firstChild);
    while (ol.children.length > 30) ol.removeChild(ol.lastChild);
    if (type === "route.stale" && d.pipeline && d.path) state.stale[d.pipeline + "|" + d.path] = Date.now();
    if (type === "batch.loaded" && d.dataset === state.dlqDataset && d.rejected && d.rejected.length) loadDeadLetters(false);
  }

  function follow() {
    if (typeof EventSource === "undefined" || state.key) {
      setLive(true, "polling every 5 s");
      return;
    }
    var es = new EventSource("/v1/changes");
    es.onopen = function () { setLive(true, "live"); };
    es.onerror = function () { setLive(false, "reconnecting\u2026"); };
    ["batch.loaded", "model.refreshed", "cache.refreshed", "route.stale"].forEach(function (t) {
      es.addEventListener(t, function (ev) { addChange(t, ev.data); soon(); });
    });
    es.onmessage = function (ev) { addChange("change", ev.data); soon(); };
  }

  /* ---- start --------------------------------------------------------------------- */

  function init() {
    var now = Date.now();
    $("bf-from").value = isoHour(now - 48 * 3600000);
    $("bf-to").value = isoHour(now);
    $("keyform").hidden = !state.key;
    $("key").value = state.key;
    $("keyform").addEventListener("submit", function (ev) {
      ev.preventDefault();
      state.key = $("key").value.trim();
      sessionStorage.setItem("freshet-key", state.key);
      loadStatus();
      loadSeries();
    });
    $("dlq-ds").addEventListener("change", function () { setDlqDataset($("dlq-ds").value); });
    $("dlq-refresh").addEventListener("click", function () { loadDeadLetters(false); });
    $("dlq-more").addEventListener("click", function () { loadDeadLetters(true); });
    $("series-ds").addEventListener("change", loadSeries);
    $("bf-form").addEventListener("submit", startBackfill);
    loadStatus().then(loadSeries);
    follow();
    setInterval(loadStatus, 5000);
    setInterval(loadSeries, 15000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
