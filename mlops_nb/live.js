// The live run view of mlops_nb (mlops_nb/live.py): plain ES module code for anywidget, no build step, no CDN.
// The kernel sends each curve already downsampled (at most a few hundred points per metric, a few updates a second);
// this file only draws: SVG curves with smoothing, log scale and a metric picker, and the run's state around them.
const SVG = "http://www.w3.org/2000/svg";

function h(tag, attrs = {}, ...kids) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) e.setAttribute(k, v);
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

export function fmt(v, digits = 5) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 10 ** (digits + 1) || a < 1e-3)) return v.toExponential(digits - 2);
  return String(+v.toPrecision(digits));
}

function dur(s) {
  s = Math.max(0, Math.floor(s));
  const hr = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
  return (hr ? hr + "h " : "") + (hr || m ? m + "m " : "") + x + "s";
}

function bytes(n) {
  if (n === null || n === undefined) return "?";
  return n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KB" : (n / 1048576).toFixed(1) + " MB";
}

// TensorBoard's smoothing: an exponential moving average, debiased at the start.
export function smooth(ys, w) {
  if (!w) return ys;
  let last = 0, n = 0;
  return ys.map((y) => { last = last * w + (1 - w) * y; n++; return last / (1 - Math.pow(w, n)); });
}

function chart(key, pts, meta, smoothing, logY) {
  const W = 340, H = 150, L = 46, R = 8, T = 8, B = 22;
  // x: the step when steps grow and are not all 0, else the point's number
  const bySteps = pts.length > 1 && pts.some((p) => p[1] !== 0) && pts.every((p, i) => i === 0 || p[1] >= pts[i - 1][1]);
  let xs = pts.map((p) => (bySteps ? p[1] : p[0]));
  let ys = pts.map((p) => p[2]);
  if (logY) { const keep = ys.map((y) => y > 0); xs = xs.filter((_, i) => keep[i]); ys = ys.filter((y) => y > 0).map(Math.log10); }
  const sm = smooth(ys, smoothing);
  const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "ml-svg" });
  if (!ys.length) { svg.append(h("svg:text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "ml-axis" }, logY ? "no positive values" : "no points yet")); return svg; }
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= Math.abs(y0) * 0.05 || 0.5; y1 += Math.abs(y1) * 0.05 || 0.5; }
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R), Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const line = (vs) => xs.map((x, i) => `${X(x).toFixed(1)},${Y(vs[i]).toFixed(1)}`).join(" ");
  const lab = (v) => fmt(logY ? Math.pow(10, v) : v, 3);
  svg.append(
    h("svg:rect", { x: L, y: T, width: W - L - R, height: H - T - B, class: "ml-plot" }),
    h("svg:text", { x: L - 4, y: T + 9, "text-anchor": "end", class: "ml-axis" }, lab(y1)),
    h("svg:text", { x: L - 4, y: H - B, "text-anchor": "end", class: "ml-axis" }, lab(y0)),
    h("svg:text", { x: L, y: H - 6, class: "ml-axis" }, String(x0)),
    h("svg:text", { x: W - R, y: H - 6, "text-anchor": "end", class: "ml-axis" }, (bySteps ? "step " : "#") + x1),
    h("svg:polyline", { points: line(ys), class: smoothing ? "ml-raw ml-faded" : "ml-raw" }),
  );
  if (smoothing) svg.append(h("svg:polyline", { points: line(sm), class: "ml-smooth" }));
  return svg;
}

function render({ model, el }) {
  const root = h("div", { class: "mlops-live" });
  el.append(root);
  let frame = null, timer = null, offset = 0;  // offset: the kernel's clock minus this browser's, for the elapsed time
  const draw = () => { frame = null; paint(); };
  const later = () => { if (frame === null) frame = requestAnimationFrame(draw); };

  function header(run, fate) {
    const state = run.status || "RUNNING";
    const took = ((run.ended || Date.now() / 1000 + offset) - (run.started || 0));
    const link = run.link ? h("a", { href: run.link, target: "_blank", rel: "noopener", class: "ml-link" }, "open in MLflow ↗")
                          : h("span", { class: "ml-hint" }, run.hint || "");
    return h("div", { class: "ml-head" },
      h("span", { class: `ml-dot ml-${state.toLowerCase()}` }), " ",
      h("b", { class: "ml-name" }, run.name || run.journal_run), " ",
      h("span", { class: "ml-state", "data-field": "state" }, fate.kind === "quota" ? "STOPPED BY QUOTA" : state), " ",
      h("span", { class: "ml-elapsed", "data-field": "elapsed" }, dur(took)), " ",
      h("span", { class: "ml-muted" }, `experiment ${run.experiment}`), " ",
      h("span", { class: "ml-id ml-muted", "data-field": "run-id" }, run.run_id ? `id ${run.run_id}` : "id pending"), " ",
      link);
  }

  // built once: the controls keep their state (a slider being dragged) while the rest is redrawn
  let head = h("div");
  const fateBox = h("div"), pick = h("div", { class: "ml-pick" }), grid = h("div", { class: "ml-charts" }), foot = h("div", { class: "ml-foot" });
  const slider = h("input", { type: "range", min: "0", max: "0.99", step: "0.01", value: "0", class: "ml-smoothing" });
  const smoothLabel = h("span", {}, "0.00");
  slider.addEventListener("input", () => { model.set("smoothing", +slider.value); model.save_changes(); });
  const log = h("input", { type: "checkbox", class: "ml-log" });
  log.addEventListener("change", () => { model.set("log_y", log.checked); model.save_changes(); });
  root.append(head, fateBox, h("div", { class: "ml-controls" }, pick, h("label", {}, "smoothing ", slider, " ", smoothLabel), h("label", {}, log, " log scale")), grid, foot);
  let pickKey = null, resOpen = false;  // the resources' checkboxes are folded until opened

  function paint() {
    const run = model.get("run") || {}, metrics = model.get("metrics") || {}, series = model.get("series") || {};
    const fate = model.get("fate") || {}, health = model.get("health") || {}, quota = model.get("quota") || {};
    const selected = model.get("selected") || [], smoothing = model.get("smoothing") || 0, logY = !!model.get("log_y");
    if (run.now) offset = run.now - Date.now() / 1000;
    root.dataset.runId = run.run_id || "";
    root.dataset.status = run.status || "RUNNING";
    head.replaceWith(head = header(run, fate));
    fateBox.replaceChildren();
    if (fate.status) {
      const why = fate.kind === "quota" ? `Stopped by quota: ${fate.reason}` : fate.reason ? `${fate.status}: ${fate.reason}` : `Run ${fate.status.toLowerCase()}`;
      fateBox.append(h("div", { class: `ml-fate ml-fate-${fate.kind}`, "data-field": "fate", "data-kind": fate.kind }, why));
    }
    if (document.activeElement !== slider) slider.value = String(smoothing);
    smoothLabel.textContent = smoothing.toFixed(2);
    log.checked = logY;
    // the picker: every metric, the model's own first, resources after; redrawn only when the metrics or the choice change
    const keys = Object.keys(metrics).sort((a, b) => (metrics[a].resource - metrics[b].resource));
    const key = JSON.stringify([keys, selected]);
    if (key !== pickKey) {
      pickKey = key;
      const res = h("details", { class: "ml-res-group" }, h("summary", {}, `resources (${keys.filter((k) => metrics[k].resource).length})`));
      res.open = resOpen;
      res.addEventListener("toggle", () => { resOpen = res.open; });
      pick.replaceChildren(h("span", { class: "ml-muted" }, "metrics "));
      for (const k of keys) {
        const box = h("input", { type: "checkbox", "data-metric": k });
        box.checked = selected.includes(k);
        box.addEventListener("change", () => {
          const now = (model.get("selected") || []).filter((x) => x !== k);
          if (box.checked) now.push(k);
          model.set("selected", keys.filter((x) => now.includes(x)));
          model.set("picked", true);
          model.save_changes();
        });
        (metrics[k].resource ? res : pick).append(h("label", { class: metrics[k].resource ? "ml-res-pick" : "" }, box, " " + k));
      }
      if (res.children.length > 1) pick.append(res);
    }
    grid.replaceChildren();
    for (const k of selected) {
      const m = metrics[k] || {}, pts = series[k] || [];
      grid.append(h("div", { class: "ml-chart", "data-metric": k },
        h("div", { class: "ml-title" }, h("span", { class: "ml-key" }, k), " ",
          h("span", { class: "ml-last", "data-value": m.last === null || m.last === undefined ? "" : String(m.last) }, fmt(m.last)), " ",
          h("span", { class: "ml-count ml-muted", "data-count": String(m.n || 0) }, `${m.n || 0} points` + (m.step ? `, step ${m.step}` : ""))),
        chart(k, pts, m, smoothing, logY)));
    }
    if (!selected.length) grid.append(h("div", { class: "ml-muted" }, keys.length ? "pick a metric to draw it" : "no metrics logged yet: mn.log_metric(...) in a later cell draws here"));
    // resources, store, quota
    const res = (model.get("resources") || []).map(([label, v, unit]) => `${label} ${fmt(v, 3)} ${unit}`).join(" · ");
    const store = health.store_ok === true ? "store ok" : health.store_ok === false ? "store unreachable" : "store not reached yet";
    const parts = [h("span", { class: "ml-res" }, res || "resources: none logged yet"),
      h("span", { class: `ml-health ${health.store_ok === false || health.error ? "ml-warn" : ""}`, "data-field": "health" },
        `${store}${health.error ? " (" + health.error + ")" : ""} · backlog ${bytes(health.backlog)} · sync ${health.sync_running ? "running" : "idle"}` +
        (health.behind > 65536 ? ` · catching up: ${bytes(health.behind)} of the journal to read` : "") +
        (health.refused ? ` · refused: ${health.refused}` : ""))];
    if (quota.budget) {
      const pc = Math.min(100, 100 * quota.share);
      parts.push(h("span", { class: "ml-quota", "data-field": "quota", "data-share": String(quota.share) },
        h("span", { class: "ml-bar" }, h("span", { class: quota.share >= 1 ? "ml-over" : quota.share >= 0.8 ? "ml-soft" : "", style: `width:${pc}%` })),
        ` quota ${Math.round(100 * quota.share)}% of ${quota.budget} for ${quota.scope} (${fmt(quota.used)} of ${quota.limit} ${quota.unit})`));
    }
    foot.replaceChildren(...parts);
  }

  for (const k of ["run", "metrics", "series", "resources", "health", "quota", "fate", "selected", "smoothing", "log_y"]) model.on(`change:${k}`, later);
  timer = setInterval(() => {  // the elapsed time ticks in the browser: no traffic from the kernel for it
    const run = model.get("run") || {}, e = root.querySelector(".ml-elapsed");
    if (e && !run.ended) e.textContent = dur(Date.now() / 1000 + offset - (run.started || 0));
  }, 1000);
  paint();
  return () => { clearInterval(timer); if (frame !== null) cancelAnimationFrame(frame); };
}

export default { render };
