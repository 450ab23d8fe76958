// The training-set review page: reads the JSON in #data, renders one page of rows at a time,
// keeps the person's keep / drop decisions (in memory and in the browser's localStorage) and
// exports them as decisions.csv. No network: every image is a file beside the page.
(function () {
  const data = JSON.parse(document.getElementById("data").textContent);
  const rows = data.rows;
  const storeKey = "llb-review:" + data.key;
  const decisions = new Map();
  rows.forEach(r => { if (r.d) decisions.set(r.id, r.d); });
  try {
    const saved = JSON.parse(localStorage.getItem(storeKey) || "null");
    if (saved) { decisions.clear(); saved.forEach(([id, d]) => decisions.set(id, d)); }
  } catch (e) { /* storage unavailable: decisions live in memory only */ }
  const state = { filter: "all", range: null, query: "", pageSize: 50, page: 0 };
  const pct = v => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + " %");
  const svg = (tag, attrs, ...children) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
    }
    children.forEach(c => node.append(c instanceof Node ? c : document.createTextNode(String(c))));
    return node;
  };

  const finalKept = r => (decisions.has(r.id) ? decisions.get(r.id) === "keep" : r.r === 1);
  function visible() {
    const q = state.query.toLowerCase();
    return rows.map((r, i) => [r, i]).filter(([r]) => {
      if (q && !r.id.toLowerCase().includes(q)) return false;
      if (state.range && !(r.f >= state.range[0] && (r.f < state.range[1] || state.range[2]))) return false;
      switch (state.filter) {
        case "dropped": return !finalKept(r);
        case "kept": return finalKept(r);
        case "band": return r.b === 1;
        case "marked": return decisions.has(r.id);
        case "anomalous": return r.l === 1;
        default: return true;
      }
    });
  }

  function saveDecisions() {
    try { localStorage.setItem(storeKey, JSON.stringify([...decisions])); } catch (e) { /* ignore */ }
    renderCounter();
  }

  function csvField(text) {
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }
  function exportCsv() {
    const lines = ["id,decision"];
    rows.forEach(r => { if (decisions.has(r.id)) lines.push(csvField(r.id) + "," + decisions.get(r.id)); });
    const a = el("a", { href: "data:text/csv;charset=utf-8," + encodeURIComponent(lines.join("\n") + "\n"), download: "decisions.csv" });
    document.body.append(a);
    a.click();
    a.remove();
  }

  // ---- header, summary, explanations ----
  function header() {
    const nOverruled = rows.filter(r => r.d && (r.d === "keep") !== (r.r === 1)).length;
    const cards = [
      [data.n, "training images"], [data.nKept, "kept for the final model"], [data.nDropped, "dropped"],
      [data.nEligible, "eligible candidates"], [data.bandSize, "in the borderline band"],
    ];
    if (data.purity) {
      const p = data.purity;
      cards.push([p.n_anomalous_removed + " / " + p.n_anomalous, "hidden anomalies removed"]);
      cards.push([pct(p.removal_precision), "removal precision"]);
      cards.push([pct(p.anomaly_fraction_before) + " → " + pct(p.anomaly_fraction_after), "anomaly fraction"]);
    }
    const k = data.models.length;
    const parts = [
      el("h1", {}, "Training-set review: " + data.title),
      el("p", { class: "sub" }, data.n + " images screened by " + k + " " + data.detector + " sub-models; fused by ",
        el("code", {}, data.fusion), ", selected by ", el("code", {}, data.selection), "; cut = ",
        el("b", {}, fmt(data.cut)), " (the highest fused score the rule keeps)."),
      el("div", { class: "cards" }, cards.map(([v, t]) => el("div", { class: "card" }, el("b", {}, v), el("span", {}, t)))),
    ];
    if (data.decisions) {
      parts.push(el("div", { class: "note" }, "This fit applied " + data.decisions[1] + " decision(s) from ",
        el("code", {}, data.decisions[0]), " (" + nOverruled + " overrule the rule). They are preselected below; export again to keep them."));
    }
    if (data.nDropped === 0) {
      parts.push(el("div", { class: "note warn" }, el("b", {}, "Nothing was dropped. "),
        "No image's fused score stands out above the others under " + data.selection + ". ",
        "That is not proof of a clean set: defects that recur in many images are learnt as normal by every sub-model, ",
        "and small or faint defects may not raise an image's score. Look at the top of the ranking anyway."));
    }
    if (data.mapsNote) parts.push(el("div", { class: "note warn" }, data.mapsNote));
    parts.push(el("details", {}, el("summary", {}, "How to read this page"), el("ul", {},
      el("li", {}, "Each image was scored by " + k + " sub-models, each fitted on one block of the training set; a sub-model scores the images of the other blocks without having seen them (", el("i", {}, "out"), "), and its own block's images after training on them (", el("i", {}, "in"), ", shown faded). Learning bias makes an anomaly score high for the sub-models that did not see it."),
      el("li", {}, "The fused score combines the " + k + " scores with ", el("code", {}, data.fusion), "; the rule ", el("code", {}, data.selection), " keeps the lowest fused scores. Rows are ranked by fused score, most suspicious first."),
      el("li", {}, "Eligible candidates: " + data.nEligible + " of " + data.n + " images were scored by at least one sub-model that never saw them (at least " + data.minOutOfSubset + " each), so the ranking can judge them fairly."),
      el("li", {}, "Borderline band: the " + data.bandSize + " images whose fused scores lie nearest the cut (" + fmt(data.band[0]) + " to " + fmt(data.band[1]) + "); a person's eye helps most there."),
      el("li", {}, "Nothing dropped means no image stands out under this rule at this cut; it does not mean there is no defect (recurring or faint defects score like normal images)."),
      el("li", {}, "Heat maps: the mean anomaly map of the sub-models that did not train on the image, on one colour scale for the whole page (legend beside the histogram)."),
      el("li", {}, "Mark images ", el("b", {}, "keep"), " or ", el("b", {}, "drop"), ", then ", el("b", {}, "Export decisions.csv"), " and refit: ", el("code", {}, "llb fit … --decisions decisions.csv"), ". Your marks are remembered by this browser for this page."))));
    return parts;
  }

  function histogram() {
    const W = 800, H = 210, L = 44, R = 12, T = 14, B = 34;
    const bins = data.hist;
    const lo = bins[0].lo, hi = bins[bins.length - 1].hi;
    const x = v => L + (W - L - R) * (hi > lo ? (v - lo) / (hi - lo) : 0.5);
    const max = Math.max(1, ...bins.map(b => b.normal + b.anomalous + b.unlabeled));
    const y = c => H - B - (H - B - T) * c / max;
    const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "histogram of fused scores" });
    g.append(svg("rect", { x: x(data.band[0]), y: T, width: Math.max(2, x(data.band[1]) - x(data.band[0])), height: H - B - T, fill: "#fff1c2" }));
    bins.forEach(b => {
      let base = 0;
      for (const [count, colour] of [[b.normal, "#4682b4"], [b.anomalous, "#dc143c"], [b.unlabeled, "#8c959f"]]) {
        if (!count) continue;
        const bar = svg("rect", { class: "bar", x: x(b.lo) + 0.5, y: y(base + count), width: Math.max(1, x(b.hi) - x(b.lo) - 1), height: y(base) - y(base + count), fill: colour,
          onclick: () => { state.range = [b.lo, b.hi, b === bins[bins.length - 1]]; state.page = 0; render(); } });
        bar.append(svg("title", {}, `${fmt(b.lo)} – ${fmt(b.hi)}: ${count}`));
        g.append(bar);
        base += count;
      }
    });
    g.append(svg("line", { x1: x(data.cut), x2: x(data.cut), y1: T - 4, y2: H - B, stroke: "#e16f00", "stroke-width": 2.5, "stroke-dasharray": "6 3" }));
    g.append(svg("text", { x: x(data.cut) + 4, y: T + 8, "font-size": 12, fill: "#e16f00" }, "cut " + fmt(data.cut)));
    g.append(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#8c959f" }));
    for (const [v, anchor] of [[lo, "start"], [hi, "end"]]) {
      g.append(svg("text", { x: x(v), y: H - B + 16, "font-size": 12, "text-anchor": anchor, fill: "#59636e" }, fmt(v)));
    }
    g.append(svg("text", { x: (L + W - R) / 2, y: H - 4, "font-size": 12, "text-anchor": "middle", fill: "#59636e" }, "fused score (click a bar to list its images)"));
    g.append(svg("text", { x: L - 6, y: T + 10, "font-size": 12, "text-anchor": "end", fill: "#59636e" }, max));
    g.append(svg("text", { x: L - 6, y: H - B, "font-size": 12, "text-anchor": "end", fill: "#59636e" }, 0));
    const legend = el("div", { class: "legend" },
      data.purity ? [el("div", {}, el("span", { class: "swatch", style: "background:#4682b4" }), "normal (hidden label)"),
        el("div", {}, el("span", { class: "swatch", style: "background:#dc143c" }), "anomalous (hidden label)")]
        : el("div", {}, el("span", { class: "swatch", style: "background:#8c959f" }), "training images"),
      el("div", {}, el("span", { class: "swatch", style: "background:#e16f00" }), "the rule's cut"),
      el("div", {}, el("span", { class: "swatch", style: "background:#fff1c2;border:1px solid #d4a72c" }), "borderline band"),
      data.heat ? [el("div", { style: "margin-top:10px" }, "Heat-map colours (one scale for all images):"), el("div", { class: "scale" }),
        el("div", { class: "scale-labels" }, el("span", {}, "≤ " + fmt(data.heat.low)), el("span", {}, "≥ " + fmt(data.heat.high))),
        el("div", {}, "red: as high as the screening score of the image at the cut;"),
        el("div", {}, "blue: the maps' typical level")] : null);
    return el("div", { class: "chart" }, g, legend);
  }

  // ---- toolbar and rows ----
  const counter = el("span", { id: "counter" });
  function renderCounter() {
    const overrule = rows.filter(r => decisions.has(r.id) && (decisions.get(r.id) === "keep") !== (r.r === 1)).length;
    counter.textContent = decisions.size + " marked, " + overrule + " overrule the rule";
  }
  const pageInfo = el("span", { id: "page-info" });
  const prev = el("button", { id: "prev", onclick: () => { state.page--; render(); } }, "‹ Prev");
  const next = el("button", { id: "next", onclick: () => { state.page++; render(); } }, "Next ›");
  const filters = [["all", "All"], ["dropped", "Dropped"], ["band", "Borderline"], ["kept", "Kept"], ["marked", "Marked"]];
  if (data.purity) filters.push(["anomalous", "Hidden anomalies"]);
  const filterButtons = filters.map(([f, label]) => el("button", { "data-filter": f, onclick: () => { state.filter = f; state.range = null; state.page = 0; render(); } }, label));
  const toolbar = el("div", { class: "toolbar" },
    el("div", { class: "group" }, filterButtons),
    el("input", { type: "search", placeholder: "Filter by id…", oninput: e => { state.query = e.target.value; state.page = 0; render(); } }),
    el("select", { id: "page-size", onchange: e => { state.pageSize = +e.target.value; state.page = 0; render(); } },
      [10, 25, 50, 100, 200].map(n => el("option", { value: n, selected: n === state.pageSize }, n + " per page"))),
    prev, pageInfo, next, el("span", { class: "spacer" }), counter,
    el("button", { id: "export", class: "primary", onclick: exportCsv }, "Export decisions.csv"));
  const list = el("div", { class: "rows", id: "rows" });

  function thumb(present, src, alt) {
    return present ? el("img", { class: "thumb", src, alt, loading: "lazy", width: 104, height: 104 })
      : el("div", { class: "thumb none" }, alt === "heat map" ? "no heat map" : "no thumbnail");
  }
  function rowView(r, i) {
    const name = String(i).padStart(5, "0") + ".jpg";
    const marked = decisions.get(r.id);
    const keptNow = finalKept(r);
    const ruleWord = r.r === 1 ? "kept" : "dropped";
    const why = marked && (marked === "keep") !== (r.r === 1)
      ? "your decision (the rule " + ruleWord + " it)"
      : (r.r === 1 ? "fused " + fmt(r.f) + " ≤ cut " + fmt(data.cut) : "fused " + fmt(r.f) + " > cut " + fmt(data.cut)) + " (" + data.selection + ")";
    const lo = data.hist[0].lo, hi = data.hist[data.hist.length - 1].hi;
    const at = v => Math.min(100, Math.max(0, 100 * (hi > lo ? (v - lo) / (hi - lo) : 0.5)));
    const decide = (d) => el("button", { "data-action": d, class: marked === d ? "on" : null, onclick: () => {
      if (decisions.get(r.id) === d) decisions.delete(r.id); else decisions.set(r.id, d);
      saveDecisions(); render();
    } }, d);
    return el("div", { class: "row" + (r.b ? " band" : "") + (marked && (marked === "keep") !== (r.r === 1) ? " changed" : ""), "data-id": r.id, "data-verdict": keptNow ? "kept" : "dropped", "data-rule": ruleWord },
      el("div", { class: "rank" }, "#" + (i + 1)),
      thumb(r.img, "review/img/" + name, "photo"),
      thumb(r.heat, "review/heat/" + name, "heat map"),
      el("div", {}, el("div", { class: "id" }, r.id), el("div", { class: "badges" },
        r.l === 1 ? el("span", { class: "badge anomalous" }, "anomalous" + (r.t ? ": " + r.t : "")) : null,
        r.l === 0 ? el("span", { class: "badge normal" }, "normal") : null,
        r.b ? el("span", { class: "badge band" }, "borderline") : null)),
      el("div", { class: "score" }, el("span", { class: "why" }, "fused score "), el("b", {}, fmt(r.f)),
        el("div", { class: "meter", title: "between the lowest and the highest fused score" },
          el("i", { class: r.f > data.cut ? "over" : null, style: "width:" + Math.max(2, at(r.f)) + "%" }),
          el("u", { style: "left:" + at(data.cut) + "%" }))),
      el("div", { class: "subs" }, r.s.map(([s, inside], j) => el("span", { class: "chip" + (inside ? " in" : ""), title: data.models[j] + (inside ? ": trained on this image" : ": never saw this image") }, "#" + j + " " + fmt(s) + (inside ? " in" : " out")))),
      el("div", {}, el("div", { class: "verdict " + (keptNow ? "kept" : "dropped") }, keptNow ? "kept" : "dropped"),
        el("div", { class: "why" }, why), el("div", { class: "decide" }, decide("keep"), decide("drop"))));
  }

  function render() {
    const shown = visible();
    const pages = Math.max(1, Math.ceil(shown.length / state.pageSize));
    state.page = Math.min(Math.max(0, state.page), pages - 1);
    const start = state.page * state.pageSize;
    const slice = shown.slice(start, start + state.pageSize);
    list.replaceChildren(...(slice.length ? slice.map(([r, i]) => rowView(r, i)) : [el("div", { class: "empty" }, "No image matches this filter.")]));
    pageInfo.textContent = "page " + (state.page + 1) + " of " + pages + " (" + shown.length + " images" + (state.range ? ", fused " + fmt(state.range[0]) + "–" + fmt(state.range[1]) : "") + ")";
    prev.disabled = state.page === 0;
    next.disabled = state.page >= pages - 1;
    filterButtons.forEach(b => b.classList.toggle("on", b.dataset.filter === state.filter && !state.range));
    renderCounter();
  }

  const app = document.getElementById("app");
  app.replaceChildren(...header(), histogram(), toolbar, list,
    el("footer", {}, "Written by llb. Works offline: images are files in review/ beside this page."));
  render();
  document.body.dataset.readyMs = performance.now().toFixed(0);
  document.body.dataset.ready = "1";
})();
