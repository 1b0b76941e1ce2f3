// The septa dashboard: draws the model (`GET /model`), lights the allowed flows as records
// arrive on `GET /flows/stream`, lists denials with their reasons, shows the last reload
// (`GET /reload`), each segment's share of a core over the last few seconds (`GET /cpu`), and,
// when the application spans several nodes, what each node runs and which flows go between
// nodes. Plain JS, no libraries; every text from the server goes in as text, never as markup (a
// flow's path is whatever a client sent).
'use strict';

const SVG_NS = 'http://www.w3.org/2000/svg';
const LAYOUT = {
  nodeWidth: 180, nodeHeight: 38, gap: 10, pad: 12, title: 24, column: 48, top: 16, left: 16,
};
const KEPT_LINES = 40;
// How often each segment's CPU is read, in ms.
const CPU_EVERY = 3000;

const state = {
  model: null,
  nodes: new Map(), // id → { data, box: {x, y, w, h}, element }
  edges: new Map(), // "from -> to" → { data, element, count, denied, reason }
  flows: 0,
  denials: 0,
  selected: null,
  cpu: null, // the last `GET /cpu`: { at: ms, seconds: Map(segment → CPU seconds) }
};

const $ = (id) => document.getElementById(id);

/** An HTML element with attributes and children (strings become text nodes). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

/** An SVG element with attributes and children. */
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function showError(message, login) {
  const box = $('error');
  box.replaceChildren(message);
  if (login) box.append(' ', el('a', { href: '/login' }, 'Log in again.'));
  box.hidden = false;
}

async function getJson(path, options) {
  const response = await fetch(path, Object.assign({ credentials: 'same-origin' }, options));
  const body = await response.json().catch(() => ({}));
  return { status: response.status, body };
}

// ---------------------------------------------------------------------------------------------
// Layout and drawing: the gateway, one column per segment with its subnets stacked and their
// nodes inside, then the egress destinations outside. Deterministic: the model's order.

async function loadModel() {
  const { status, body } = await getJson('/model');
  if (status !== 200) {
    showError(`cannot load the model (${status}): ${body.error || 'no answer'}`, status === 401);
    return;
  }
  $('error').hidden = true;
  state.model = body;
  draw(body);
  if (body.truncated) showError(body.truncated, false);
}

function draw(model) {
  $('application').textContent = model.application;
  $('policy').textContent =
    `policy ${String(model.policy_hash).slice(0, 12)} · generation ${model.generation}`;
  const graph = $('graph');
  graph.replaceChildren();
  state.nodes.clear();
  state.edges.clear();
  graph.append(svg('defs', {}, svg('marker', {
    id: 'arrow', viewBox: '0 0 10 10', refX: '10', refY: '5', markerWidth: '9',
    markerHeight: '9', markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse',
  }, svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#607d8b' }))));
  const regions = svg('g', { class: 'regions' });
  const edges = svg('g', { class: 'edges' });
  const nodes = svg('g', { class: 'nodes' });
  graph.append(regions, edges, nodes);

  const L = LAYOUT;
  const byPlace = new Map();
  for (const n of model.nodes) {
    const key = n.kind === 'function' || n.kind === 'endpoint' ? `${n.segment}/${n.subnet}` : n.kind;
    if (!byPlace.has(key)) byPlace.set(key, []);
    byPlace.get(key).push(n);
  }
  let x = L.left;
  let bottom = 0;
  for (const n of byPlace.get('gateway') || []) {
    placeNode(nodes, n, x, L.top + L.title);
    x += L.nodeWidth + L.column;
  }
  for (const segment of segmentsByDepth(model)) {
    const width = L.nodeWidth + 4 * L.pad;
    const group = svg('g', { class: `segment mode-${segment.mode}`, 'data-segment': segment.name });
    regions.append(group);
    let y = L.top + L.title;
    for (const subnet of segment.subnets) {
      const members = byPlace.get(`${segment.name}/${subnet.name}`) || [];
      const height = L.title + Math.max(members.length, 1) * (L.nodeHeight + L.gap) + L.pad;
      group.append(svg('g', {
        class: `subnet tier-${subnet.tier}`, 'data-subnet': `${segment.name}/${subnet.name}`,
      },
      svg('rect', { x: x + L.pad, y, width: width - 2 * L.pad, height, rx: 6 }),
      svg('text', { class: 'title', x: x + 2 * L.pad, y: y + 16 }, `subnet ${subnet.name} · ${subnet.tier}`)));
      members.forEach((n, i) => {
        placeNode(nodes, n, x + 2 * L.pad, y + L.title + i * (L.nodeHeight + L.gap));
      });
      y += height + L.gap;
    }
    const labels = segment.labels.length ? ` [${segment.labels.join(', ')}]` : '';
    const mode = segment.mode === 'audit' ? ' (audit mode)' : '';
    // The segment's CPU, filled in by `showCpu` once two readings are known.
    group.append(svg('text', { class: 'cpu', x: x + L.pad, y: y + 8 }, 'CPU: measuring…'));
    y += L.title - L.gap;
    group.prepend(
      svg('rect', { x, y: L.top, width, height: y - L.top, rx: 10 }),
      svg('text', { class: 'title', x: x + L.pad, y: L.top + 17 }, `segment ${segment.name}${labels}${mode}`),
    );
    bottom = Math.max(bottom, y);
    x += width + L.column;
  }
  const outside = byPlace.get('egress') || [];
  if (outside.length) {
    regions.append(svg('g', { class: 'outside' },
      svg('text', { class: 'title', x, y: L.top + 17 }, 'outside (egress)')));
    outside.forEach((n, i) => placeNode(nodes, n, x, L.top + L.title + i * (L.nodeHeight + L.gap)));
    bottom = Math.max(bottom, L.top + L.title + outside.length * (L.nodeHeight + L.gap));
    x += L.nodeWidth + L.column;
  }
  for (const e of model.edges) {
    const crosses = e.crosses_nodes && e.crosses_nodes.length ? ' crosses-nodes' : '';
    addEdge(edges, e.from, e.to, e, `edge kind-${e.kind}${crosses}`);
  }
  showCluster(model.cluster);
  // Scaled down to fit the page, never up.
  graph.setAttribute('viewBox', `0 0 ${x + 80} ${bottom + 40}`);
  graph.setAttribute('width', x + 80);
  graph.setAttribute('height', bottom + 40);
  graph.dataset.generation = model.generation;
  document.body.dataset.ready = 'true';
  if (state.selected && state.nodes.has(state.selected)) select(state.selected);
}

/** Segments left to right by how few hops from the gateway their nodes are (then by name),
 * so that most flows run left to right. */
function segmentsByDepth(model) {
  const depth = new Map([['gateway', 0]]);
  const queue = ['gateway'];
  while (queue.length) {
    const at = queue.shift();
    for (const e of model.edges) {
      if (e.from === at && !depth.has(e.to)) {
        depth.set(e.to, depth.get(at) + 1);
        queue.push(e.to);
      }
    }
  }
  const rank = new Map(model.segments.map((s) => [s.name, Infinity]));
  for (const n of model.nodes) {
    if (n.segment && depth.has(n.id)) rank.set(n.segment, Math.min(rank.get(n.segment), depth.get(n.id)));
  }
  return [...model.segments].sort((a, b) => rank.get(a.name) - rank.get(b.name) || (a.name < b.name ? -1 : 1));
}

function placeNode(parent, data, x, y) {
  const L = LAYOUT;
  const box = { x, y, w: L.nodeWidth, h: L.nodeHeight };
  let sub = '';
  if (data.kind === 'endpoint') sub = `endpoint · ${data.backend}`;
  else if (data.kind === 'egress') sub = 'egress destination';
  else if (data.kind === 'gateway') sub = 'the internet';
  else if (data.routes.length) sub = `routes: ${data.routes.join(', ')}`;
  else sub = data.groups.length ? `groups: ${data.groups.join(', ')}` : 'mesh only';
  const element = svg('g', {
    class: `node kind-${data.kind} mode-${data.mode || 'enforce'}`, 'data-node': data.id,
  },
  svg('title', {}, data.id),
  svg('rect', { x, y, width: box.w, height: box.h, rx: data.kind === 'endpoint' ? 14 : 4 }),
  svg('text', { x: x + 8, y: y + 15 }, clip(data.name, 26)),
  svg('text', { class: 'sub', x: x + 8, y: y + 30 }, clip(sub, 32)));
  element.addEventListener('click', (event) => { event.stopPropagation(); select(data.id); });
  parent.append(element);
  state.nodes.set(data.id, { data, box, element });
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Draws the edge from → to; `data` is the model's edge, or null for a denied flow. */
function addEdge(parent, from, to, data, classes) {
  const a = state.nodes.get(from);
  const b = state.nodes.get(to);
  if (!a || !b) return null;
  const key = `${from} -> ${to}`;
  const [d, mid] = curve(a.box, b.box);
  const title = svg('title', {}, edgeTitle(key, data));
  const element = svg('g', { class: classes, 'data-edge': key, 'data-count': '0', 'data-denied': '0' },
    title,
    svg('path', { d, 'marker-end': 'url(#arrow)' }),
    svg('text', { class: 'count', x: mid[0], y: mid[1] - 3, 'text-anchor': 'middle' }));
  element.addEventListener('click', (event) => { event.stopPropagation(); showEdge(key); });
  parent.append(element);
  const edge = { data, element, title, count: 0, denied: 0, reason: null };
  state.edges.set(key, edge);
  return edge;
}

/** A cubic curve between two boxes, and its midpoint. */
function curve(a, b) {
  let s; let e; let c1; let c2;
  if (a === b) {
    s = [a.x + a.w, a.y + 10];
    e = [a.x + a.w, a.y + a.h - 10];
    c1 = [s[0] + 40, s[1] - 20];
    c2 = [e[0] + 40, e[1] + 20];
  } else if (b.x > a.x + a.w) {
    s = [a.x + a.w, a.y + a.h / 2];
    e = [b.x, b.y + b.h / 2];
    const dx = Math.max(40, (e[0] - s[0]) / 2);
    c1 = [s[0] + dx, s[1]];
    c2 = [e[0] - dx, e[1]];
  } else if (b.x + b.w < a.x) {
    s = [a.x, a.y + a.h / 2];
    e = [b.x + b.w, b.y + b.h / 2];
    const dx = Math.max(40, (s[0] - e[0]) / 2);
    c1 = [s[0] - dx, s[1]];
    c2 = [e[0] + dx, e[1]];
  } else {
    s = [a.x + a.w, a.y + a.h / 2];
    e = [b.x + b.w, b.y + b.h / 2];
    const dx = 30 + Math.abs(e[1] - s[1]) / 4;
    c1 = [s[0] + dx, s[1]];
    c2 = [e[0] + dx, e[1]];
  }
  const mid = [0, 1].map((i) => (s[i] + 3 * c1[i] + 3 * c2[i] + e[i]) / 8);
  return [`M${s} C${c1} ${c2} ${e}`, mid];
}

function edgeTitle(key, data) {
  if (!data) return `${key}: no rule allows this flow`;
  const rules = data.rules.map((r) => `${r.kind} ${r.id}: ${r.conditions}`).join('\n');
  const crossing = crossingText(data);
  return crossing ? `${key}\n${rules}\n${crossing}` : `${key}\n${rules}`;
}

/** The calls between nodes an edge makes, in words: `over mTLS: pay-1, pay-2 → edge-1`
 * (nodes calling the same nodes together); empty when it stays on one node. */
function crossingText(data) {
  const hops = (data && data.crosses_nodes) || [];
  if (!hops.length) return '';
  const byTarget = new Map();
  for (const hop of hops) {
    const to = hop.to.join(', ');
    if (!byTarget.has(to)) byTarget.set(to, []);
    byTarget.get(to).push(hop.from);
  }
  return `over mTLS: ${[...byTarget].map(([to, from]) => `${from.join(', ')} → ${to}`).join('; ')}`;
}

// ---------------------------------------------------------------------------------------------
// Nodes: what each node of the cluster runs; clicking one marks its places on the drawing.

function showCluster(cluster) {
  const section = $('cluster');
  $('legend-crosses').hidden = !cluster;
  section.hidden = !cluster;
  if (!cluster) return;
  $('trust-domain').textContent = `trust domain ${cluster.trust_domain}`;
  $('cluster-nodes').replaceChildren(...cluster.nodes.map((node) => {
    const item = el('li', { 'data-cluster-node': node.name },
      el('strong', {}, node.name), ' ',
      el('span', { class: 'hosts' }, node.hosts.length ? node.hosts.join(', ') : 'runs nothing'));
    item.addEventListener('click', () => showNode(node));
    return item;
  }));
}

function showNode(node) {
  clearSelection();
  const hosts = new Set(node.hosts);
  for (const [id, n] of state.nodes) n.element.classList.toggle('hosted', hosts.has(id));
  for (const item of $('cluster-nodes').children) {
    item.classList.toggle('selected', item.dataset.clusterNode === node.name);
  }
  $('graph').classList.add('on-node');
  const crossing = [];
  for (const [key, edge] of state.edges) {
    const hops = (edge.data && edge.data.crosses_nodes) || [];
    if (hops.some((h) => h.from === node.name || h.to.includes(node.name))) crossing.push(key);
  }
  $('details').replaceChildren(
    el('h2', {}, `node ${node.name}`),
    el('p', {}, node.hosts.length ? `Runs ${node.hosts.join(', ')}.` : 'Runs nothing.'),
    el('h2', {}, `Flows to or from other nodes (${crossing.length})`),
    crossing.length
      ? el('ul', {}, ...crossing.map((key) => el('li', {}, `${key}: ${crossingText(state.edges.get(key).data)}`)))
      : el('p', { class: 'muted' }, 'None: everything it runs calls only what it runs too.'),
  );
}

// ---------------------------------------------------------------------------------------------
// Details: a node's rules and blast radius, or an edge's rules and counts.

function select(id) {
  const node = state.nodes.get(id);
  if (!node) return;
  state.selected = id;
  const radius = node.data.blast_radius || { count: null, reaches: [] };
  const reach = new Set(radius.reaches);
  for (const [other, n] of state.nodes) {
    n.element.classList.toggle('selected', other === id);
    n.element.classList.toggle('reach', reach.has(other));
    n.element.classList.remove('hosted');
  }
  $('graph').classList.remove('on-node');
  for (const edge of state.edges.values()) {
    const [from, to] = edge.element.dataset.edge.split(' -> ');
    edge.element.classList.toggle('touching', from === id || to === id);
  }
  $('graph').classList.add('focus');
  const d = node.data;
  const facts = [['kind', d.kind]];
  if (d.segment) facts.push(['placement', `${d.segment}/${d.subnet} (${d.tier})`]);
  if (d.labels && d.labels.length) facts.push(['labels', d.labels.join(', ')]);
  if (d.groups && d.groups.length) facts.push(['groups', d.groups.join(', ')]);
  if (d.mode) facts.push(['mode', d.mode]);
  if (d.backend) facts.push(['backend', d.backend]);
  if (d.routes && d.routes.length) facts.push(['routes', d.routes.join(', ')]);
  if (state.model && state.model.cluster && d.nodes) {
    facts.push(['nodes', d.kind === 'gateway' ? `every node (${d.nodes.join(', ')})` : d.nodes.join(', ') || 'none']);
  }
  const rules = d.rules.map((r) => el('tr', {},
    el('td', {}, r.id), el('td', {}, r.kind), el('td', {}, r.direction), el('td', {}, r.peers.join(', '))));
  $('details').replaceChildren(
    el('h2', {}, d.id),
    el('table', { class: 'facts' }, ...facts.map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, v)))),
    el('h2', {}, `Rules (${d.rules.length})`),
    d.rules.length
      ? el('table', { id: 'node-rules' }, el('tr', {}, el('th', {}, 'rule'), el('th', {}, 'kind'),
        el('th', {}, 'dir'), el('th', {}, 'other end')), ...rules)
      : el('p', { class: 'muted' }, 'No rule touches it.'),
    el('h2', {}, 'Blast radius'),
    el('p', { id: 'blast-radius', 'data-count': String(radius.count) }, blastRadiusText(radius.count)),
    el('ul', {}, ...radius.reaches.map((r) => el('li', {}, r))),
  );
}

function blastRadiusText(count) {
  if (count === null) return 'Left out: the policy is too big to draw (see `septa audit`).';
  if (count === 0) return 'If compromised, it reaches nothing.';
  return `If compromised, it reaches ${count} place${count === 1 ? '' : 's'}:`;
}

function showEdge(key) {
  const edge = state.edges.get(key);
  clearSelection();
  const rows = edge.data ? edge.data.rules.map((r) => el('tr', {},
    el('td', {}, r.id), el('td', {}, r.kind), el('td', {}, r.conditions))) : [];
  const crossing = crossingText(edge.data);
  $('details').replaceChildren(
    el('h2', {}, key),
    el('p', {}, `${edge.count} allowed, ${edge.denied} denied since the page opened.`),
    edge.data ? el('table', {}, ...rows) : el('p', {}, `No rule allows it. Last reason: ${edge.reason}`),
    crossing
      ? el('p', { id: 'edge-crossing' }, `Between nodes ${crossing}; the receiving node decides it again.`)
      : '',
  );
}

function clearSelection() {
  state.selected = null;
  $('graph').classList.remove('focus', 'on-node');
  for (const n of state.nodes.values()) n.element.classList.remove('selected', 'reach', 'hosted');
  for (const item of $('cluster-nodes').children) item.classList.remove('selected');
  for (const e of state.edges.values()) e.element.classList.remove('touching');
}

// ---------------------------------------------------------------------------------------------
// Live traffic.

/** The drawn edge a record crossed: by its ends, or, for an egress destination written as a
 * pattern, by the rule that allowed it. */
function edgeOf(record) {
  const direct = state.edges.get(`${record.src} -> ${record.dst}`);
  if (direct) return direct;
  if (!record.rule) return null;
  for (const edge of state.edges.values()) {
    if (edge.data && edge.data.from === record.src && edge.data.rules.some((r) => r.id === record.rule)) {
      return edge;
    }
  }
  return null;
}

function onFlow(record) {
  state.flows += 1;
  let edge = edgeOf(record);
  if (record.verdict === 'deny') {
    state.denials += 1;
    if (!edge) edge = addEdge(document.querySelector('#graph .edges'), record.src, record.dst, null, 'edge denied');
    if (edge) {
      edge.denied += 1;
      edge.reason = record.reason;
      edge.element.dataset.denied = String(edge.denied);
      if (!edge.data) edge.title.textContent = `${record.src} -> ${record.dst}: denied, ${record.reason}`;
    }
    logLine($('denials'), denialLine(record));
  } else if (edge) {
    edge.count += 1;
    edge.element.dataset.count = String(edge.count);
    edge.element.classList.add('live');
  }
  // Audit mode let it through, but enforce mode would have denied it: listed with the denials.
  if (record.verdict === 'audit') logLine($('denials'), denialLine(record));
  if (edge) {
    const text = edge.element.querySelector('.count');
    const allowed = edge.count ? String(edge.count) : '';
    text.textContent = edge.denied ? `${allowed} ✕${edge.denied}`.trim() : allowed;
    flash(edge.element);
  }
  logLine($('flows'), onNode(record, el('li', { class: `verdict-${record.verdict}` },
    `${time(record)} ${record.verdict} ${record.src} → ${record.dst} ${request(record)}${record.rule ? ` [${record.rule}]` : ''}`)));
  $('counters').textContent = `${state.flows} flows · ${state.denials} denied`;
}

function denialLine(record) {
  const status = record.status ? ` (${record.status})` : '';
  const audit = record.verdict === 'audit' ? 'audit only, would be denied: ' : '';
  return onNode(record, el('li', { class: `denial verdict-${record.verdict}`, 'data-src': record.src, 'data-dst': record.dst },
    `${time(record)} ${audit}${record.src} → ${record.dst} ${request(record)}${status}: `,
    el('strong', {}, record.reason)));
}

/** A log line, with the node that wrote the record and the other node of a flow between nodes
 * when the record names them. */
function onNode(record, line) {
  if (record.node) {
    line.dataset.node = record.node;
    const peer = record.peer ? `, peer ${record.peer}` : '';
    line.append(' ', el('span', { class: 'on-node' }, `(node ${record.node}${peer})`));
  } else if (record.peer) {
    line.append(' ', el('span', { class: 'on-node' }, `(peer ${record.peer})`));
  }
  if (record.peer) line.dataset.peer = record.peer;
  return line;
}

function request(record) {
  return [record.method, record.path || record.target].filter(Boolean).join(' ');
}

function time(record) {
  return String(record.time).slice(11, 19);
}

function logLine(list, item) {
  list.prepend(item);
  while (list.children.length > KEPT_LINES) list.lastChild.remove();
}

function flash(element) {
  element.classList.remove('hot');
  // Reading layout restarts the highlight when flows come back to back.
  void element.getBoundingClientRect();
  element.classList.add('hot');
  clearTimeout(element.flashTimer);
  element.flashTimer = setTimeout(() => element.classList.remove('hot'), 900);
}

function follow() {
  const status = $('stream');
  const source = new EventSource('/flows/stream');
  const show = (s, text) => { status.dataset.state = s; status.textContent = text; };
  source.onopen = () => show('open', 'live');
  source.onmessage = (event) => {
    try { onFlow(JSON.parse(event.data)); } catch (error) { console.error(error); }
  };
  source.addEventListener('lost', (event) => {
    const { lost } = JSON.parse(event.data);
    logLine($('flows'), el('li', { class: 'verdict-deny' }, `${lost} flows lost: the page fell behind`));
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      show('closed', 'stream closed');
      showError('The live stream closed (has the session expired?).', true);
    } else {
      show('retrying', 'reconnecting…');
    }
  };
}

// ---------------------------------------------------------------------------------------------
// CPU by segment.

/** Each segment's share of a core between the last two readings of `GET /cpu`: what its guests
 * ran, as the scheduler charges it (`septa_cpu_seconds_total`). */
async function pollCpu() {
  const { status, body } = await getJson('/cpu');
  if (status !== 200) return;
  const now = performance.now();
  const seconds = new Map(body.segments.map((s) => [s.segment, s.cpu_seconds]));
  const before = state.cpu;
  state.cpu = { at: now, seconds };
  if (before && now > before.at) showCpu(before, state.cpu);
}

function showCpu(before, after) {
  const elapsed = (after.at - before.at) / 1000;
  for (const group of document.querySelectorAll('#graph .segment')) {
    const name = group.dataset.segment;
    const total = after.seconds.get(name) || 0;
    const share = Math.max(0, total - (before.seconds.get(name) || 0)) / elapsed;
    group.dataset.cpuShare = share.toFixed(4);
    group.dataset.cpuSeconds = total.toFixed(6);
    const text = group.querySelector('text.cpu');
    if (text) {
      const since = total < 1 ? `${(total * 1000).toFixed(1)} ms` : `${total.toFixed(2)} s`;
      text.textContent = `CPU ${(share * 100).toFixed(share < 0.1 ? 1 : 0)}% of a core · ${since}`;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reloads.

function showReload(attempt) {
  const box = $('reload');
  if (!attempt || attempt.last_reload === null) {
    box.dataset.state = 'none';
    box.textContent = 'No reload since start.';
    return;
  }
  const when = new Date(attempt.at_unix_s * 1000).toLocaleTimeString();
  box.dataset.state = attempt.applied ? 'applied' : 'refused';
  box.textContent = attempt.applied
    ? `Reload applied at ${when} (${attempt.trigger}): generation ${attempt.generation}. ${attempt.message}`
    : `Reload refused at ${when} (${attempt.trigger}); the old policy keeps serving: ${attempt.message}`;
  if (attempt.applied && state.model && attempt.generation !== state.model.generation) loadModel();
}

async function pollReload() {
  const { status, body } = await getJson('/reload');
  if (status === 200) showReload(body);
  else if (status === 404) $('reload').textContent = 'This septa does not report reloads.';
}

async function requestReload() {
  const button = $('reload-button');
  button.disabled = true;
  try {
    const { status, body } = await getJson('/reload', {
      method: 'POST', headers: { 'X-Septa-Dashboard': '1' },
    });
    if (status === 200 || status === 422) showReload(body);
    else showError(`reload: ${status} ${body.error || ''}`, status === 401);
  } finally {
    button.disabled = false;
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('graph').addEventListener('click', () => {
    clearSelection();
  });
  $('reload-button').addEventListener('click', requestReload);
  loadModel().then(() => {
    follow();
    pollReload();
    setInterval(pollReload, 3000);
    pollCpu();
    setInterval(pollCpu, CPU_EVERY);
  });
});
