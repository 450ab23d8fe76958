// The prediction report: reads the JSON in #data and lists the test images by anomaly score,
// one page at a time, with overlays on the model's fixed colour scale, the verdicts and, for
// anomalous images of memory-bank models, the training patch their worst patch was nearest to.
// No network: every image is a file beside the page.
(function () {
  const data = JSON.parse(document.getElementById("data").textContent);
  const rows = data.rows;
  const state = { filter: "all", pageSize: 25, page: 0 };
  const svg = (tag, attrs, ...children) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    children.forEach(c => node.append(c instanceof Node ? c : document.createTextNode(String(c))));
    return node;
  };

  function header() {
    const provenance = {
      "recorded": null,
      "none": "This model was saved without provenance (before llb recorded where memory-bank patches came from): nearest patches are shown without their training image. Refit to record it.",
      "not-memory-bank": "This detector has no memory bank, so there is no nearest training patch to show.",
    }[data.provenance];
    return [
      el("h1", {}, "Prediction report: " + data.title),
      el("p", { class: "sub" }, data.n + " images scored by ", el("code", {}, data.detector), "; an image is anomalous when its score is above the threshold ", el("b", {}, fmt(data.threshold)), "."),
      el("div", { class: "cards" },
        [[data.n, "images"], [data.nAnomalous, "anomalous"], [data.n - data.nAnomalous, "normal"], [fmt(data.threshold), "threshold"]]
          .map(([v, t]) => el("div", { class: "card" }, el("b", {}, v), el("span", {}, t)))),
      provenance ? el("div", { class: "note warn", id: "provenance-note" }, provenance) : null,
    ];
  }

  function histogram() {
    if (!data.hist.length) return null;
    const W = 800, H = 190, L = 44, R = 12, T = 14, B = 34;
    const bins = data.hist;
    const lo = Math.min(bins[0].lo, data.threshold), hi = Math.max(bins[bins.length - 1].hi, data.threshold);
    const x = v => L + (W - L - R) * (hi > lo ? (v - lo) / (hi - lo) : 0.5);
    const max = Math.max(1, ...bins.map(b => b.unlabeled));
    const y = c => H - B - (H - B - T) * c / max;
    const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "histogram of anomaly scores" });
    bins.forEach(b => {
      if (!b.unlabeled) return;
      const colour = b.lo >= data.threshold ? "#dc143c" : "#4682b4";
      const bar = svg("rect", { x: x(b.lo) + 0.5, y: y(b.unlabeled), width: Math.max(1, x(b.hi) - x(b.lo) - 1), height: y(0) - y(b.unlabeled), fill: colour });
      bar.append(svg("title", {}, `${fmt(b.lo)} – ${fmt(b.hi)}: ${b.unlabeled}`));
      g.append(bar);
    });
    g.append(svg("line", { x1: x(data.threshold), x2: x(data.threshold), y1: T - 4, y2: H - B, stroke: "#e16f00", "stroke-width": 2.5, "stroke-dasharray": "6 3" }));
    g.append(svg("text", { x: x(data.threshold) + 4, y: T + 8, "font-size": 12, fill: "#e16f00" }, "threshold " + fmt(data.threshold)));
    g.append(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#8c959f" }));
    for (const [v, anchor] of [[lo, "start"], [hi, "end"]]) {
      g.append(svg("text", { x: x(v), y: H - B + 16, "font-size": 12, "text-anchor": anchor, fill: "#59636e" }, fmt(v)));
    }
    g.append(svg("text", { x: (L + W - R) / 2, y: H - 4, "font-size": 12, "text-anchor": "middle", fill: "#59636e" }, "image anomaly score"));
    g.append(svg("text", { x: L - 6, y: T + 10, "font-size": 12, "text-anchor": "end", fill: "#59636e" }, max));
    const legend = el("div", { class: "legend" },
      el("div", {}, el("span", { class: "swatch", style: "background:#4682b4" }), "normal (≤ threshold)"),
      el("div", {}, el("span", { class: "swatch", style: "background:#dc143c" }), "anomalous"),
      el("div", { style: "margin-top:10px" }, "Overlay colours (one scale for all images):"), el("div", { class: "scale" }),
      el("div", { class: "scale-labels" }, el("span", {}, "≤ " + fmt(data.heat.low)), el("span", {}, "≥ " + fmt(data.heat.high))),
      el("div", {}, "red = at or above the threshold"),
      el("div", { style: "margin-top:10px" }, el("span", { class: "swatch", style: "outline:2px solid #cf222e;background:#fff" }), "most anomalous patch"),
      el("div", {}, el("span", { class: "swatch", style: "outline:2px solid #1a7f37;background:#fff" }), "the training patch it was nearest to"));
    return el("div", { class: "chart" }, g, legend);
  }

  const box = (cell, grid, cls) => el("div", { class: "box" + (cls ? " " + cls : ""), style:
    `left:${100 * cell[1] / grid[1]}%;top:${100 * cell[0] / grid[0]}%;width:${100 / grid[1]}%;height:${100 / grid[0]}%` });

  function rowView(r, i) {
    const n = r.nearest;
    const test = el("div", { class: "pair" }, el("img", { class: "big", src: r.overlay, alt: "overlay", loading: "lazy", width: 170, height: 170 }),
      n ? box(n.cell, n.grid) : null);
    let compared = [el("div"), el("div", { class: "why" }, r.anomalous ? "" : "normal: no comparison shown")];
    if (n) {
      const picture = n.image
        ? el("div", { class: "pair" }, el("img", { class: "big", src: n.image, alt: "training image", loading: "lazy", width: 170, height: 170 }),
          n.source_cell ? box(n.source_cell, n.grid, "normal") : null)
        : el("div", { class: "thumb none", style: "width:170px;height:170px" }, n.source_id ? "training image not found" : "no provenance");
      compared = [picture, el("div", { class: "why nearest" },
        n.source_id ? ["nearest training patch: ", el("b", {}, n.source_id), " cell (" + n.source_cell.join(", ") + ")"] : "nearest memory-bank patch: source unknown (no provenance)",
        el("br"), "test cell (" + n.cell.join(", ") + "), distance " + fmt(n.distance))];
    }
    return el("div", { class: "report-row", "data-id": r.id, "data-verdict": r.anomalous ? "anomalous" : "normal" },
      el("div", { class: "rank" }, "#" + (i + 1)),
      test,
      el("div", {}, el("div", { class: "id" }, r.id),
        el("div", { class: "verdict " + (r.anomalous ? "dropped" : "kept") }, r.anomalous ? "anomalous" : "normal"),
        el("div", { class: "score" }, el("span", { class: "why" }, "score "), el("b", {}, fmt(r.score)),
          el("span", { class: "why" }, r.anomalous ? " > " + fmt(data.threshold) : " ≤ " + fmt(data.threshold)))),
      compared);
  }

  const pageInfo = el("span", { id: "page-info" });
  const prev = el("button", { id: "prev", onclick: () => { state.page--; render(); } }, "‹ Prev");
  const next = el("button", { id: "next", onclick: () => { state.page++; render(); } }, "Next ›");
  const filterButtons = [["all", "All"], ["anomalous", "Anomalous"], ["normal", "Normal"]].map(([f, label]) =>
    el("button", { "data-filter": f, onclick: () => { state.filter = f; state.page = 0; render(); } }, label));
  const toolbar = el("div", { class: "toolbar" }, el("div", { class: "group" }, filterButtons),
    el("select", { id: "page-size", onchange: e => { state.pageSize = +e.target.value; state.page = 0; render(); } },
      [10, 25, 50, 100].map(n => el("option", { value: n, selected: n === state.pageSize }, n + " per page"))),
    prev, pageInfo, next);
  const list = el("div", { class: "rows", id: "rows" });

  function render() {
    const shown = rows.map((r, i) => [r, i]).filter(([r]) =>
      state.filter === "all" || (state.filter === "anomalous") === r.anomalous);
    const pages = Math.max(1, Math.ceil(shown.length / state.pageSize));
    state.page = Math.min(Math.max(0, state.page), pages - 1);
    const start = state.page * state.pageSize;
    const slice = shown.slice(start, start + state.pageSize);
    list.replaceChildren(...(slice.length ? slice.map(([r, i]) => rowView(r, i)) : [el("div", { class: "empty" }, "No image matches this filter.")]));
    pageInfo.textContent = "page " + (state.page + 1) + " of " + pages + " (" + shown.length + " images)";
    prev.disabled = state.page === 0;
    next.disabled = state.page >= pages - 1;
    filterButtons.forEach(b => b.classList.toggle("on", b.dataset.filter === state.filter));
  }

  document.getElementById("app").replaceChildren(...header().filter(Boolean), ...[histogram()].filter(Boolean), toolbar, list,
    el("footer", {}, "Written by llb predict. Works offline: overlays and thumbnails are files beside this page."));
  render();
  document.body.dataset.ready = "1";
})();
