// The runs table of `%mlops runs` (anywidget): sort, filter, select; overlaid curves and parallel coordinates in SVG.
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];
const NS = 'http://www.w3.org/2000/svg';

function h(tag, attrs = {}, ...kids) {
  const e = tag.startsWith('svg:') ? document.createElementNS(NS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const k of kids.flat()) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
const fmt = v => v === undefined || v === null ? '–' : typeof v === 'number' ? (Number.isInteger(v) ? String(v) : Number(v.toPrecision(4)).toString()) : String(v);
const num = v => (typeof v === 'number' ? v : (v !== undefined && v !== null && v !== '' && !isNaN(Number(v)) ? Number(v) : null));
const value = (r, c) => c.kind === 'param' ? r.params[c.key] : c.kind === 'metric' ? r.metrics[c.key] : r[c.key];

function matches(r, cols, f) {
  if (!f) return true;
  const m = f.match(/^\s*([\w.\/-]+)\s*(>=|<=|!=|>|<|=)\s*(.+?)\s*$/);
  if (m) {
    const c = cols.find(c => c.key === m[1]);
    if (c) {
      const v = value(r, c), x = num(v), y = num(m[3]);
      const [a, b] = x !== null && y !== null ? [x, y] : [String(v), m[3]];
      return {'>': a > b, '<': a < b, '>=': a >= b, '<=': a <= b, '=': a == b, '!=': a != b}[m[2]];
    }
  }
  const hay = [r.name, r.run_id, r.status, ...Object.values(r.params), ...Object.values(r.metrics).map(fmt)].join(' ').toLowerCase();
  return hay.includes(f.toLowerCase());
}

function curvesSvg(curves, names, metric, colours) {
  const W = 520, H = 240, L = 56, B = 28, T = 10, R = 10;
  const svg = h('svg:svg', {class: 'mnrv-curves', width: W, height: H, 'data-metric': metric});
  const series = Object.entries(curves).filter(([, m]) => m[metric] && m[metric].length);
  const pts = series.flatMap(([, m]) => m[metric]);
  if (!pts.length) { svg.append(h('svg:text', {x: L, y: H / 2}, `no curve for ${metric}`)); return svg; }
  const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) x1 = x0 + 1; if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const X = x => L + (x - x0) / (x1 - x0) * (W - L - R), Y = y => H - B - (y - y0) / (y1 - y0) * (H - B - T);
  svg.append(h('svg:line', {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: '#999'}), h('svg:line', {x1: L, y1: T, x2: L, y2: H - B, stroke: '#999'}),
             h('svg:text', {x: L - 4, y: T + 8, 'text-anchor': 'end', class: 'mnrv-tick'}, fmt(y1)),
             h('svg:text', {x: L - 4, y: H - B, 'text-anchor': 'end', class: 'mnrv-tick'}, fmt(y0)),
             h('svg:text', {x: L, y: H - 8, class: 'mnrv-tick'}, `step ${fmt(x0)}`),
             h('svg:text', {x: W - R, y: H - 8, 'text-anchor': 'end', class: 'mnrv-tick'}, fmt(x1)));
  for (const [rid, m] of series) {
    const p = m[metric], c = colours[rid];
    const line = h('svg:polyline', {class: 'mnrv-curve', 'data-run': rid, fill: 'none', stroke: c, 'stroke-width': 2,
                                    points: p.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ')});
    line.append(h('svg:title', {}, `${names[rid] || rid}: ${fmt(p[p.length - 1][1])} at step ${p[p.length - 1][0]}`));
    svg.append(line);
    if (p.length === 1) svg.append(h('svg:circle', {cx: X(p[0][0]), cy: Y(p[0][1]), r: 3, fill: c}));
  }
  return svg;
}

function parcoordsSvg(rows, cols, sel, colours) {
  const axes = cols.filter(c => rows.some(r => num(value(r, c)) !== null)).slice(0, 12);
  const W = Math.max(320, 110 * axes.length), H = 220, T = 26, B = 24;
  const svg = h('svg:svg', {class: 'mnrv-parcoords', width: W, height: H});
  if (axes.length < 2) { svg.append(h('svg:text', {x: 10, y: H / 2}, 'parallel coordinates need two numeric columns that differ')); return svg; }
  const X = i => 40 + i * (W - 80) / (axes.length - 1);
  const scale = axes.map(c => { const v = rows.map(r => num(value(r, c))).filter(v => v !== null); return [Math.min(...v), Math.max(...v)]; });
  const Y = (i, v) => { const [a, b] = scale[i]; return H - B - (b === a ? 0.5 : (v - a) / (b - a)) * (H - B - T); };
  axes.forEach((c, i) => svg.append(h('svg:line', {x1: X(i), y1: T, x2: X(i), y2: H - B, stroke: '#888'}),
    h('svg:text', {x: X(i), y: 14, 'text-anchor': 'middle', class: 'mnrv-axis'}, c.key),
    h('svg:text', {x: X(i) + 3, y: T + 8, class: 'mnrv-tick'}, fmt(scale[i][1])), h('svg:text', {x: X(i) + 3, y: H - B, class: 'mnrv-tick'}, fmt(scale[i][0]))));
  for (const r of [...rows].sort((a, b) => sel.has(a.run_id) - sel.has(b.run_id))) {
    const pts = axes.map((c, i) => [i, num(value(r, c))]).filter(([, v]) => v !== null).map(([i, v]) => `${X(i).toFixed(1)},${Y(i, v).toFixed(1)}`);
    const on = sel.has(r.run_id);
    const line = h('svg:polyline', {class: 'mnrv-pc' + (on ? ' mnrv-pc-on' : ''), 'data-run': r.run_id, fill: 'none',
                                    stroke: on ? colours[r.run_id] : '#bbb', 'stroke-width': on ? 2.5 : 1, points: pts.join(' ')});
    line.append(h('svg:title', {}, r.name || r.run_id)); svg.append(line);
  }
  return svg;
}

function render({ model, el }) {
  let sortKey = null, sortDir = -1, filter = '', metric = null;
  const root = h('div', {class: 'mnrv'}); el.append(root);
  function draw() {
    const rows = model.get('rows'), cols = model.get('columns'), sel = new Set(model.get('selected')), curves = model.get('curves');
    const colours = {}; [...sel].forEach((rid, i) => colours[rid] = PALETTE[i % PALETTE.length]);
    const names = Object.fromEntries(rows.map(r => [r.run_id, r.name]));
    const fixed = [{key: 'name', kind: 'run'}, {key: 'status', kind: 'run'}, {key: 'start', kind: 'run'}];
    let shown = rows.filter(r => matches(r, [...fixed, ...cols], filter));
    if (sortKey) {
      const c = [...fixed, ...cols].find(c => c.key === sortKey);
      shown = [...shown].sort((a, b) => {
        const x = value(a, c), y = value(b, c);
        if (x === undefined || x === null) return 1; if (y === undefined || y === null) return -1;
        const [p, q] = num(x) !== null && num(y) !== null ? [num(x), num(y)] : [String(x), String(y)];
        return (p < q ? -1 : p > q ? 1 : 0) * sortDir;
      });
    }
    const th = c => h('th', {class: `mnrv-${c.kind}`, 'data-key': c.key, 'aria-sort': sortKey === c.key ? (sortDir > 0 ? 'ascending' : 'descending') : 'none',
                            title: `${c.kind === 'run' ? '' : c.kind + ' '}${c.key}: click to sort`,
                            onclick: () => { sortDir = sortKey === c.key ? -sortDir : (c.kind === 'metric' ? -1 : 1); sortKey = c.key; draw(); }},
                      c.key + (sortKey === c.key ? (sortDir > 0 ? ' ▲' : ' ▼') : ''));
    const box = r => h('input', {type: 'checkbox', class: 'mnrv-select', 'data-run': r.run_id, ...(sel.has(r.run_id) ? {checked: ''} : {}),
                                 onchange: e => { const s = new Set(model.get('selected')); e.target.checked ? s.add(r.run_id) : s.delete(r.run_id);
                                                  model.set('selected', [...s]); model.save_changes(); }});
    const tr = r => h('tr', {'data-run': r.run_id, class: sel.has(r.run_id) ? 'mnrv-on' : ''},
      h('td', {}, box(r)),
      h('td', {class: 'mnrv-name', style: `padding-left:${0.4 + 1.2 * (r.depth || 0)}em`}, (r.depth ? '↳ ' : ''),
        r.link ? h('a', {href: r.link, target: '_blank', title: `run ${r.run_id} in the MLflow UI`}, r.name || r.run_id.slice(0, 8)) : (r.name || r.run_id.slice(0, 8))),
      h('td', {class: `mnrv-status mnrv-${String(r.status).toLowerCase()}`}, r.status), h('td', {}, r.start_text),
      ...cols.map(c => h('td', {class: `mnrv-${c.kind}`, 'data-key': c.key}, fmt(value(r, c)))));
    const input = h('input', {class: 'mnrv-filter', placeholder: 'filter: text, or auc>0.9, lr=0.1', value: filter,
                              oninput: e => { filter = e.target.value; draw(); const f = root.querySelector('.mnrv-filter'); f.focus(); f.setSelectionRange(filter.length, filter.length); }});
    const keys = [...new Set(Object.values(curves).flatMap(m => Object.keys(m)))].sort();
    if (!keys.includes(metric)) metric = (sortKey && keys.includes(sortKey)) ? sortKey : keys[0] || null;
    const pick = h('select', {class: 'mnrv-metric', onchange: e => { metric = e.target.value; draw(); }}, ...keys.map(k => h('option', {value: k, ...(k === metric ? {selected: ''} : {})}, k)));
    root.replaceChildren(
      h('div', {class: 'mnrv-head'}, 'Experiment ', h('b', {}, model.get('experiment')), ` · ${rows.length} runs (${shown.length} shown) · `,
        cols.length ? `${cols.length} columns differ` : 'no param or metric differs', model.get('hint') ? [' · ', h('span', {class: 'mnrv-hint'}, model.get('hint'))] : []),
      input,
      h('div', {class: 'mnrv-scroll'}, h('table', {class: 'mnrv-table'}, h('thead', {}, h('tr', {}, h('th', {}, ''), ...fixed.map(th), ...cols.map(th))),
                                         h('tbody', {}, ...shown.map(tr)))),
      sel.size ? h('div', {class: 'mnrv-charts'},
        h('div', {}, h('div', {class: 'mnrv-sub'}, `${sel.size} selected: curves of `, pick), curvesSvg(curves, names, metric, colours),
          h('div', {class: 'mnrv-legend'}, ...[...sel].map(rid => h('span', {style: `color:${colours[rid]}`}, '■ ' + (names[rid] || rid.slice(0, 8)) + ' ')))),
        h('div', {}, h('div', {class: 'mnrv-sub'}, 'parallel coordinates (selected in colour)'), parcoordsSvg(shown, cols, sel, colours)))
        : h('div', {class: 'mnrv-hint'}, 'Select runs to overlay their metric curves and compare them in parallel coordinates.'));
  }
  model.on('change:rows', draw); model.on('change:columns', draw); model.on('change:selected', draw); model.on('change:curves', draw);
  draw();
}
export default { render };
