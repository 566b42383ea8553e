import QRCode from 'qrcode';
import { LiveChart, accuracyData, breakdownData, formats, lossData, throughputData } from './charts.js';
import { describeRefusal, isLoopback, joinUrl, monitorUrl, sendControl, tokenFrom, type ControlAction } from './controls.js';
import { NONE, backendChoice, bytes, clock, duration, integer, millis, number, percent, rate, share } from './format.js';
import { applyMessage, backoffMs, emptyState, parseMessage, type Changes } from './state.js';
import { BREAKDOWN_PARTS, type Status, type WorkerRow } from './types.js';

/** How many recent steps the stacked step-time view shows. */
const BREAKDOWN_STEPS = 100;
/** Charts redraw at most this often (steps can come many times a second). */
const CHART_INTERVAL_MS = 500;
/** A feed silent this long (the coordinator sends its status every second) is reopened. */
const SILENCE_MS = 10_000;

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
};

const el = <K extends keyof HTMLElementTagNameMap>(tag: K, props: { text?: string; className?: string } = {}, ...children: Node[]): HTMLElementTagNameMap[K] => {
  const node = document.createElement(tag);
  if (props.text !== undefined) node.textContent = props.text;
  if (props.className) node.className = props.className;
  node.append(...children);
  return node;
};

const plural = (n: number, word: string): string => `${integer(n)} ${word}${n === 1 ? '' : 's'}`;

const setText = (id: string, text: string): void => {
  const node = $(id);
  if (node.textContent !== text) node.textContent = text;
};

// ------------------------------------------------------------------ state

const state = emptyState();
let token = tokenFrom(location.search);
let connected = false;
const dirty: Changes = { status: false, steps: false, evals: false, events: false };
let frameRequested = false;
let lastChartDraw = 0;

const charts = {
  loss: new LiveChart($('loss-chart'), formats.loss),
  accuracy: new LiveChart($('accuracy-chart'), formats.accuracy, {
    scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, Math.max(0.2, Math.min(1, (max ?? 1) * 1.1))] } },
  }),
  throughput: new LiveChart($('throughput-chart'), formats.rate, {
    scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, Math.max(1, (max ?? 1) * 1.1)] } },
  }),
  breakdown: new LiveChart($('breakdown-chart'), formats.ms, {
    scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, Math.max(1, (max ?? 1) * 1.05)] } },
  }),
};

// ------------------------------------------------------------------ rendering

function requestRender(changes: Changes): void {
  dirty.status ||= changes.status;
  dirty.steps ||= changes.steps;
  dirty.evals ||= changes.evals;
  dirty.events ||= changes.events;
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(render);
}

function render(): void {
  frameRequested = false;
  if (dirty.status) {
    dirty.status = false;
    renderSummary();
    renderWorkers();
    renderControls();
  }
  if (dirty.events) {
    dirty.events = false;
    renderEvents();
  }
  if (dirty.steps || dirty.evals) {
    const wait = lastChartDraw + CHART_INTERVAL_MS - performance.now();
    if (wait > 0) {
      // Come back when the interval is over; nothing is lost, the state has it all.
      setTimeout(() => requestRender({ status: false, steps: false, evals: false, events: false }), wait);
      return;
    }
    dirty.steps = false;
    dirty.evals = false;
    lastChartDraw = performance.now();
    renderCharts();
    renderLatestBreakdown();
  }
}

function runState(status: Status): 'training' | 'paused' | 'finished' | 'waiting' {
  if (status.step >= status.steps) return 'finished';
  if (status.paused) return 'paused';
  if (!status.workers.some((w) => w.state !== 'left')) return 'waiting';
  return 'training';
}

const RUN_STATE_TEXT = { training: 'training', paused: 'paused', finished: 'finished', waiting: 'waiting for workers' } as const;

function renderSummary(): void {
  const s = state.status;
  if (!s) return;
  const phase = runState(s);
  const pill = $('run-state');
  pill.dataset.state = phase;
  setText('run-state', RUN_STATE_TEXT[phase]);
  setText('title-run', `${s.preset} · ${integer(s.paramCount)} parameters`);
  setText('step', `${integer(s.step)} / ${integer(s.steps)}`);
  $('step').dataset.step = String(s.step);
  $('progress-bar').style.width = `${Math.min(100, (100 * s.step) / Math.max(1, s.steps)).toFixed(2)}%`;
  setText('epoch', integer(s.epoch));
  setText('elapsed', duration(s.elapsedSeconds));
  setText('eta', phase === 'finished' ? 'done' : s.etaSeconds === null ? NONE : duration(s.etaSeconds));
  setText('preset', s.preset);
  setText('params', integer(s.paramCount));
  setText('batch', integer(s.batch));
  setText('lr', number(s.lr, 3));
  setText('loss', number(s.loss, 4));
  setText('accuracy', percent(s.accuracy));
  setText('test-accuracy', percent(s.testAccuracy, 2));
  const last = state.steps.at(-1);
  setText('throughput', last ? rate(last.imagesPerSecond) : NONE);
  const active = s.workers.filter((w) => w.state !== 'left').length;
  setText('worker-count', `${active}${s.workers.length > active ? ` (${s.workers.length - active} left)` : ''}`);
  setText('params-hash', s.paramsHash ? s.paramsHash.slice(0, 16) : NONE);
  document.title = `${integer(s.step)}/${integer(s.steps)} ${RUN_STATE_TEXT[phase]} · Chorus`;
}

const STATE_ORDER: Record<WorkerRow['state'], number> = { training: 0, straggling: 1, throttled: 2, idle: 3, left: 4 };

function renderWorkers(): void {
  const s = state.status;
  if (!s) return;
  const rows = [...s.workers].sort((a, b) => STATE_ORDER[a.state] - STATE_ORDER[b.state] || a.id.localeCompare(b.id, 'en', { numeric: true }));
  const body = $('workers').querySelector('tbody')!;
  body.replaceChildren(
    ...rows.map((w) => {
      const tr = el('tr');
      tr.dataset.workerId = w.id;
      tr.dataset.state = w.state;
      const status = el('span', { text: w.state, className: 'state' });
      status.dataset.state = w.state;
      const statusCell = el('td', {}, status);
      if (w.state === 'idle' && w.idleReason) {
        // The reason in full under the pill: an idle worker is a question a user will ask.
        statusCell.append(el('div', { text: w.idleReason, className: 'idle-reason' }));
        statusCell.title = w.idleReason;
      }
      const device = el('td', { text: w.device || NONE, className: 'device' });
      device.title = w.device;
      // What the worker measured when it chose its backend (the others and why not), on hover.
      const backend = el('td', { text: w.backend, className: 'backend' });
      const measured = backendChoice(w.backends);
      if (measured) {
        backend.title = measured;
        backend.dataset.measured = 'true';
      }
      tr.append(
        el('td', { text: w.id, className: 'mono' }),
        el('td', { text: w.kind }),
        backend,
        device,
        el('td', { text: w.state === 'left' || w.state === 'idle' ? NONE : share(w.lastShard, s.batch), className: 'num' }),
        el('td', { text: rate(w.imagesPerSecond), className: 'num' }),
        el('td', { text: millis(w.lastLatencyMs), className: 'num' }),
        el('td', { text: bytes(w.bytesIn), className: 'num' }),
        el('td', { text: bytes(w.bytesOut), className: 'num' }),
        el('td', { text: integer(w.shardsDone), className: 'num' }),
        statusCell,
      );
      return tr;
    }),
  );
  setText('workers-empty', rows.length === 0 ? 'No worker has joined yet.' : '');
}

const EVENTS_SHOWN = 500;

function renderEvents(): void {
  const items = state.events
    .slice(-EVENTS_SHOWN)
    .reverse()
    .map((e) => {
      const li = el('li', {}, el('time', { text: clock(e.time) }), el('span', { text: e.kind, className: 'kind' }), el('span', { text: e.message }));
      li.dataset.kind = e.kind;
      (li.firstChild as HTMLTimeElement).dateTime = new Date(e.time).toISOString();
      return li;
    });
  $('events').replaceChildren(...items);
}

function renderCharts(): void {
  const loss = lossData(state.steps, state.evals);
  charts.loss.set(loss.series, loss.data);
  const accuracy = accuracyData(state.steps, state.evals);
  charts.accuracy.set(accuracy.series, accuracy.data);
  const throughput = throughputData(state.steps);
  charts.throughput.set(throughput.series, throughput.data);
  const breakdown = breakdownData(state.steps, BREAKDOWN_STEPS);
  charts.breakdown.set(breakdown.series, breakdown.data);
}

function renderLatestBreakdown(): void {
  const last = state.steps.at(-1);
  const bar = $('breakdown-latest');
  const legend = $('breakdown-legend');
  if (!last?.breakdown) {
    bar.replaceChildren();
    legend.replaceChildren();
    setText('step-time-total', '');
    return;
  }
  const parts = BREAKDOWN_PARTS.map((p) => ({ ...p, ms: Math.max(0, last.breakdown[p.key] ?? 0) }));
  const total = parts.reduce((a, p) => a + p.ms, 0);
  bar.replaceChildren(
    ...parts.map((p) => {
      const d = el('div');
      d.style.background = p.color;
      d.style.flexGrow = String(total > 0 ? p.ms / total : 0);
      d.title = `${p.label}: ${millis(p.ms)}`;
      return d;
    }),
  );
  legend.replaceChildren(
    ...parts.map((p) => {
      const swatch = el('i');
      swatch.style.background = p.color;
      const li = el('li', {}, swatch, document.createTextNode(`${p.label} ${millis(p.ms)}`));
      li.dataset.part = p.key;
      return li;
    }),
  );
  setText('step-time-total', `(step ${integer(last.step)}: ${millis(last.seconds * 1000)}, ${plural(last.shards, 'shard')} on ${plural(last.workers, 'worker')})`);
}

// ------------------------------------------------------------------ controls and token

function renderControls(): void {
  const s = state.status;
  const can = token !== null && connected && s !== null;
  const finished = s !== null && s.step >= s.steps;
  ($('pause') as HTMLButtonElement).disabled = !can || finished || s.paused;
  ($('resume') as HTMLButtonElement).disabled = !can || finished || !s.paused;
  ($('checkpoint') as HTMLButtonElement).disabled = !can;
  setText(
    'token-note',
    token === null
      ? 'The controls need the run’s token: open the dashboard URL the coordinator printed (…/?token=…) or enter the token here.'
      : !connected
        ? 'The controls come back when the dashboard is connected again.'
        : '',
  );
  $('token-form').hidden = token !== null && !tokenRefused;
  $('change-token').hidden = token === null || tokenRefused;
}

let tokenRefused = false;

function showResult(kind: 'ok' | 'refused' | 'pending', text: string): void {
  const out = $('control-result');
  out.dataset.kind = kind;
  out.textContent = text;
}

async function control(action: ControlAction): Promise<void> {
  if (token === null) {
    showResult('refused', 'Refused: no token. Enter the run’s token first.');
    return;
  }
  showResult('pending', `${action}…`);
  const result = await sendControl(action, token);
  if (result.ok) {
    tokenRefused = false;
    const done =
      action === 'pause'
        ? 'Paused: the step in flight finishes, then training waits.'
        : action === 'resume'
          ? 'Resumed.'
          : `Checkpoint written${result.path ? `: ${result.path}` : '.'}`;
    showResult('ok', `${done} (${clock(Date.now())})`);
  } else {
    tokenRefused = result.status === 401 || result.status === 403;
    showResult('refused', describeRefusal(action, result));
  }
  renderControls();
}

function setToken(value: string | null): void {
  token = value;
  tokenRefused = false;
  const url = new URL(location.href);
  if (value === null) url.searchParams.delete('token');
  else url.searchParams.set('token', value);
  history.replaceState(null, '', url);
  renderControls();
  void renderJoin();
}

async function renderJoin(): Promise<void> {
  const link = $('join-link') as HTMLAnchorElement;
  const canvas = $('join-qr') as HTMLCanvasElement;
  const copy = $('copy-join') as HTMLButtonElement;
  const notes: string[] = [];
  if (token === null) {
    link.hidden = canvas.hidden = copy.hidden = true;
    notes.push('The join link carries the run’s token: enter it under Controls to show the link and its QR code.');
  } else {
    const url = joinUrl(location.origin, token);
    link.href = url;
    link.textContent = url;
    link.hidden = copy.hidden = false;
    try {
      await QRCode.toCanvas(canvas, url, { width: 164, margin: 1, errorCorrectionLevel: 'M', color: { dark: '#1d2430', light: '#ffffff' } });
      canvas.hidden = false;
    } catch (error) {
      canvas.hidden = true;
      notes.push(`No QR code: ${(error as Error).message}`);
    }
    notes.push('Open it in a browser tab (WebGPU where available) to train with this run; closing the tab leaves.');
    if (isLoopback(location.hostname)) {
      notes.push('This address only works on this machine: to join from a phone or another computer, start the coordinator with --host 0.0.0.0 and open the dashboard at this machine’s network address.');
    }
  }
  setText('join-note', notes.join(' '));
}

// ------------------------------------------------------------------ the live feed

let attempt = 0;
let silence: ReturnType<typeof setTimeout> | null = null;
let retryTimer: ReturnType<typeof setInterval> | null = null;

function setConnection(kind: 'connecting' | 'live' | 'retrying', text: string): void {
  const c = $('connection');
  c.dataset.state = kind;
  c.textContent = text;
}

function connect(): void {
  setConnection('connecting', attempt === 0 ? 'connecting…' : `reconnecting (attempt ${attempt + 1})…`);
  let socket: WebSocket;
  try {
    socket = new WebSocket(monitorUrl(location));
  } catch (error) {
    retry(`cannot open the feed: ${(error as Error).message}`);
    return;
  }
  let gone = false;
  // Once per socket, whether it closed or went silent (a half-open connection may never close).
  const lost = (why: string) => {
    if (gone) return;
    gone = true;
    if (silence !== null) clearTimeout(silence);
    silence = null;
    const wasConnected = connected;
    connected = false;
    requestRender({ status: true, steps: false, evals: false, events: false });
    retry(wasConnected ? why : 'the coordinator is not reachable');
  };
  const alive = () => {
    if (silence !== null) clearTimeout(silence);
    silence = setTimeout(() => {
      lost('the feed went silent');
      socket.close();
    }, SILENCE_MS);
  };
  alive(); // a connection attempt that hangs is given up too
  socket.addEventListener('open', () => {
    if (gone) return;
    attempt = 0;
    connected = true;
    setConnection('live', 'live');
    alive();
    requestRender({ status: true, steps: false, evals: false, events: false });
  });
  socket.addEventListener('message', (event) => {
    if (gone) return;
    alive();
    if (typeof event.data !== 'string') return;
    const message = parseMessage(event.data);
    if (message) requestRender(applyMessage(state, message));
  });
  socket.addEventListener('close', (event) => lost(`connection lost (${event.code})`));
}

function retry(why: string): void {
  const delay = backoffMs(attempt);
  attempt += 1;
  const until = Date.now() + delay;
  const tick = () => setConnection('retrying', `${why}: retrying in ${Math.max(0, Math.ceil((until - Date.now()) / 1000))} s`);
  tick();
  if (retryTimer !== null) clearInterval(retryTimer);
  retryTimer = setInterval(tick, 1000);
  setTimeout(() => {
    if (retryTimer !== null) clearInterval(retryTimer);
    retryTimer = null;
    connect();
  }, delay);
}

// ------------------------------------------------------------------ wiring

for (const action of ['pause', 'resume', 'checkpoint'] as const) {
  $(action).addEventListener('click', () => void control(action));
}
$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('token-input') as HTMLInputElement;
  const value = input.value.trim();
  input.value = '';
  setToken(value === '' ? null : value);
  showResult('pending', value === '' ? '' : 'Token set: the controls will say if the coordinator refuses it.');
});
$('change-token').addEventListener('click', () => {
  tokenRefused = true;
  renderControls();
  ($('token-input') as HTMLInputElement).focus();
});
$('copy-join').addEventListener('click', () => {
  const url = ($('join-link') as HTMLAnchorElement).href;
  navigator.clipboard?.writeText(url).then(
    () => setText('copy-join', 'Copied'),
    () => setText('copy-join', 'Copy failed: select the link'),
  );
  setTimeout(() => setText('copy-join', 'Copy link'), 2000);
});

renderControls();
void renderJoin();
connect();
