// Merchant dashboard: operator token, issuing points (the customer's key scanned from the QR code
// of their wallet, by camera or from a picture), network status (polled) and the live feed.
import { getNetwork, getStatus, issueTicket } from '/web/client.js';
import {
  $, busy, clockTime, describeError, el, ErrorBox, ELOAN_STATE_WORDS, ELOAN_STEP_WORDS, ESHARE_STATE_WORDS,
  ESHARE_STEP_WORDS, inWords, loadNodeInfo, loadWasm, normalisePk, parseJsonObject, pkProblem, shortId, shortPk, watchChanges,
} from '/web/common.js';

const TOKEN_KEY = 'beaufort.operator-token';
const POLL_MS = 2000;
const FEED_MAX = 100;

const errors = new ErrorBox($('error'));
let info = null;
let token = readToken();
// After a 401 we stop polling: hammering the node with a wrong token helps nobody.
let tokenRejected = false;
let pollTimer = null;

function readToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return ''; // storage disabled: the token then lives until the page closes
  }
}

function writeToken(value) {
  token = value;
  try {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    errors.show('token', 'This browser does not allow saving the token; it will be forgotten when the page closes.');
  }
}

function setTokenState(kind, text) {
  const badge = $('token-status');
  badge.className = `badge ${kind}`;
  badge.textContent = text;
}

// ---- Token ----

$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const value = $('token').value.trim();
  if (!value) {
    errors.show('token', 'Type or paste the operator token before saving.');
    return;
  }
  errors.clear('token');
  writeToken(value);
  $('token').value = '';
  tokenRejected = false;
  setTokenState('info', 'checking…');
  pollStatus();
});

$('clear-token').addEventListener('click', () => {
  writeToken('');
  $('token').value = '';
  tokenRejected = false;
  errors.clear('status');
  errors.clear('token');
  setTokenState('', 'no token');
  pollStatus();
});

// ---- Issuing points ----

if (navigator.clipboard && navigator.clipboard.readText && window.isSecureContext) {
  $('paste-owner').hidden = false;
  $('paste-owner').addEventListener('click', async () => {
    try {
      $('issue-owner').value = normalisePk(await navigator.clipboard.readText());
    } catch (e) {
      errors.show('issue', `Could not read the clipboard (${e.message}); paste into the field instead.`);
    }
  });
}

// ---- The customer's QR code ----

/** Pictures are scaled down to this many pixels on their longer side before decoding. */
const SCAN_MAX_SIDE = 1600;
/** How often a camera frame is looked at while scanning. */
const SCAN_EVERY_MS = 250;
let cameraStream = null;

function setScan(state, text) {
  $('scan-status').dataset.state = state;
  $('scan-status').textContent = text;
}

/** The browser's own QR reader where it has one (it reads live video fastest), else null. */
const nativeDetector = (async () => {
  if (typeof window.BarcodeDetector === 'undefined') return null;
  try {
    const formats = await window.BarcodeDetector.getSupportedFormats();
    return formats.includes('qr_code') ? new window.BarcodeDetector({ formats: ['qr_code'] }) : null;
  } catch {
    return null;
  }
})();

/** Puts a scanned key into the form; false (and the reason shown) when it is not a customer key. */
function useScanned(text) {
  const pk = normalisePk(text);
  const problem = pkProblem(pk);
  if (problem) {
    setScan('error', `That QR code does not hold a customer key: ${problem}`);
    return false;
  }
  $('issue-owner').value = pk;
  setScan('found', `Customer ${shortPk(pk)} scanned. Enter the points and issue them.`);
  return true;
}

/**
 * The text of a QR code in `source` (an ImageBitmap or a playing video), decoded by the node's
 * WebAssembly module from the pixels; null when there is none. Throws when one is there but
 * cannot be read.
 */
async function decodePixels(source, width, height) {
  const scale = Math.min(1, SCAN_MAX_SIDE / Math.max(width, height, 1));
  const w = Math.max(1, Math.round(width * scale));
  const h = Math.max(1, Math.round(height * scale));
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, w, h);
  ctx.drawImage(source, 0, 0, w, h);
  const wasm = await loadWasm();
  const pixels = ctx.getImageData(0, 0, w, h).data;
  return wasm.decodeQr(new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength), w, h) ?? null;
}

/** The QR text in `source` by the WebAssembly decoder, then the browser's reader if it has one. */
async function readQr(source, width, height) {
  let failure = null;
  try {
    const text = await decodePixels(source, width, height);
    if (text !== null) return text;
  } catch (e) {
    failure = e;
  }
  const detector = await nativeDetector;
  if (detector) {
    const found = await detector.detect(source);
    if (found.length > 0 && typeof found[0].rawValue === 'string') return found[0].rawValue;
  }
  if (failure) throw failure;
  return null;
}

$('scan-file').addEventListener('change', async () => {
  const file = $('scan-file').files[0];
  if (!file) return;
  setScan('scanning', `Reading ${file.name}…`);
  try {
    const bitmap = await createImageBitmap(file);
    let text;
    try {
      text = await readQr(bitmap, bitmap.width, bitmap.height);
    } finally {
      bitmap.close();
    }
    if (text === null) {
      setScan('none', `No QR code found in ${file.name}. Take the picture closer, with the whole code in it.`);
    } else {
      useScanned(text);
    }
  } catch (e) {
    setScan('error', `Could not read a QR code from ${file.name}: ${describeError(e)}`);
  }
  $('scan-file').value = ''; // choosing the same file again reads it again
});

function stopCamera() {
  if (cameraStream) cameraStream.getTracks().forEach((t) => t.stop());
  cameraStream = null;
  const video = $('scan-video');
  video.pause();
  video.srcObject = null;
  video.hidden = true;
  $('scan-stop').hidden = true;
  $('scan-camera').hidden = false;
}

/** Looks at the camera's current frame; schedules the next look until a customer key is read. */
async function scanFrame(stream) {
  if (cameraStream !== stream) return; // stopped, or a new scan started
  const video = $('scan-video');
  if (video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA && video.videoWidth > 0) {
    let text = null;
    try {
      text = await readQr(video, video.videoWidth, video.videoHeight);
    } catch {
      text = null; // a blurred frame: the next one may be sharp
    }
    if (cameraStream !== stream) return;
    if (text !== null && useScanned(text)) {
      stopCamera();
      return;
    }
  }
  setTimeout(() => scanFrame(stream), SCAN_EVERY_MS);
}

if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.isSecureContext) {
  $('scan-camera').hidden = false;
  $('scan-camera').addEventListener('click', async () => {
    setScan('scanning', 'Starting the camera…');
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
      cameraStream = stream;
      const video = $('scan-video');
      video.srcObject = stream;
      video.hidden = false;
      $('scan-camera').hidden = true;
      $('scan-stop').hidden = false;
      await video.play();
      setScan('scanning', "Hold the customer's QR code in front of the camera.");
      scanFrame(stream);
    } catch (e) {
      stopCamera();
      setScan('error', `The camera is not available (${describeError(e)}); read the code from a picture instead.`);
    }
  });
  $('scan-stop').addEventListener('click', () => {
    stopCamera();
    setScan('idle', '');
  });
}

$('issue-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const result = $('issue-result');
  result.className = 'result';
  result.replaceChildren();
  const owner = normalisePk($('issue-owner').value);
  const pointsText = $('issue-points').value.trim();
  const points = Number(pointsText);
  const problem =
    pkProblem(owner) ||
    (!/^\d+$/.test(pointsText) || !Number.isSafeInteger(points) || points <= 0
      ? 'Points must be a whole number greater than zero.'
      : null) ||
    (!token ? "Save the operator token first (it is in this node's configuration file)." : null);
  if (problem) {
    errors.show('issue', problem);
    result.className = 'result fail';
    result.textContent = `Not issued: ${problem}`;
    return;
  }
  $('issue-owner').value = owner;
  await busy($('issue-button'), 'Issuing…', async () => {
    try {
      const ticket = await issueTicket(token, { owner, points });
      errors.clear('issue');
      result.className = 'result ok';
      result.dataset.ticket = ticket.id || '';
      result.replaceChildren(
        `Issued ${ticket.points ?? points} points to ${shortPk(ticket.owner || owner)} — ticket `,
        el('code', { id: 'issue-ticket', title: ticket.id }, ticket.id || '?'),
        ticket.view !== undefined ? ` (certified in view ${ticket.view}).` : '.',
      );
      // Clear both fields: the next customer at the counter is someone else.
      $('issue-points').value = '';
      $('issue-owner').value = '';
    } catch (e) {
      if (e.status === 401) setTokenState('bad', 'rejected');
      errors.show('issue', `Issuing ${points} points failed: ${describeError(e)}`);
      result.className = 'result fail';
      result.textContent = `Not issued: ${describeError(e)}`;
    }
  });
});

// ---- Network status ----

function schedulePoll() {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(pollStatus, POLL_MS);
}

async function pollStatus() {
  clearTimeout(pollTimer);
  if (!token) {
    $('status-updated').textContent = 'save the operator token to see the status';
    $('status').classList.add('stale');
    setTokenState('', 'no token');
    return; // saving a token restarts polling
  }
  if (tokenRejected) return;
  // A hidden tab does not need fresh numbers; the next visible tick catches up.
  if (document.hidden) return schedulePoll();
  try {
    renderStatus(await getStatus(token));
    errors.clear('status');
    setTokenState('ok', 'accepted');
  } catch (e) {
    $('status').classList.add('stale');
    $('status-updated').textContent = `last poll failed at ${clockTime()}`;
    if (e.status === 401) {
      tokenRejected = true;
      setTokenState('bad', 'rejected');
      errors.show('status', `The node rejected the operator token — check it and save it again. ${describeError(e)}`);
      return;
    }
    errors.show('status', `Network status unavailable: ${describeError(e)}`);
  }
  schedulePoll();
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && token && !tokenRejected) pollStatus();
});

const list = (xs) => (Array.isArray(xs) && xs.length ? xs.join(', ') : 'none');

function renderStatus(s) {
  $('status').classList.remove('stale');
  $('status-updated').textContent = `updated ${clockTime()}`;
  // Members are numbered from 0 (as in the configuration and the CLI): say so.
  $('status-member').textContent = `${s.member} (numbered 0–${Number(s.members) - 1})`;
  $('status-neighbours').textContent = list(s.neighbours);
  const excluded = Array.isArray(s.excluded) ? s.excluded : [];
  $('status-excluded').textContent = list(excluded);
  $('status-excluded-box').classList.toggle('alert', excluded.length > 0);
  $('status-excluded-box').title = excluded.length
    ? 'These members were caught equivocating; their votes are ignored.'
    : '';
  $('status-keys').textContent = String(s.keys ?? '—');
  $('status-pending').textContent = String(s.pending_writes ?? '—');

  const progress = Array.isArray(s.in_progress) ? s.in_progress : [];
  $('status-in-progress-count').textContent = String(progress.length);
  // The entries' shape is the backend's business; show a key if there is one.
  $('status-in-progress').replaceChildren(
    ...progress.slice(0, 8).map((p) => el('li', {}, typeof p === 'string' ? p : p?.key ?? JSON.stringify(p))),
    ...(progress.length > 8 ? [el('li', { class: 'muted' }, `and ${progress.length - 8} more`)] : []),
  );

  renderLatency(Array.isArray(s.recent_commits) ? s.recent_commits : []);
}

function renderLatency(commits) {
  const values = commits.map((c) => Number(c.latency_ms)).filter((v) => Number.isFinite(v) && v >= 0);
  const chart = $('latency-chart');
  $('latency-count').textContent = String(values.length);
  if (values.length === 0) {
    chart.replaceChildren();
    chart.setAttribute('aria-label', 'No commits yet');
    $('latency-p50').textContent = '—';
    $('latency-max').textContent = '—';
    return;
  }
  const sorted = [...values].sort((a, b) => a - b);
  const p50 = sorted[Math.ceil(sorted.length / 2) - 1];
  const max = sorted[sorted.length - 1];
  $('latency-p50').textContent = `${Math.round(p50)} ms`;
  $('latency-max').textContent = `${Math.round(max)} ms`;
  chart.setAttribute('aria-label', `${values.length} recent commits, median ${Math.round(p50)} ms, max ${Math.round(max)} ms`);
  chart.replaceChildren(
    ...commits.slice(-60).map((c) => {
      const ms = Number(c.latency_ms) || 0;
      const bar = el('div', { class: 'bar', title: `${c.key ?? ''}: ${Math.round(ms)} ms` });
      bar.style.height = `${Math.max(3, (ms / (max || 1)) * 100)}%`;
      return bar;
    }),
  );
}

// ---- Live feed ----

const atThisShop = (m) => (info && Number(m) === Number(info.member) ? ' (this shop)' : '');

// Shop names by member index, from the network description; numbers until it has loaded.
let shopNames = [];
getNetwork()
  .then((network) => {
    shopNames = (Array.isArray(network?.members) ? network.members : []).map((m) =>
      typeof m?.name === 'string' ? m.name : null,
    );
  })
  .catch(() => {});
const shop = (m) => (m === undefined || m === null ? '?' : shopNames[Number(m)] || `member ${m}`);

/** The compiled-in contracts' names, states and steps in words. */
const CONTRACT_WORDS = {
  eshare: { label: 'eShare', states: ESHARE_STATE_WORDS, steps: ESHARE_STEP_WORDS },
  eloan: { label: 'eLoan', states: ELOAN_STATE_WORDS, steps: ELOAN_STEP_WORDS },
};

/** Turns a committed change into { tag, title, detail } a shop assistant can read at a glance. */
function describeChange(ch) {
  if (ch.deleted) return { tag: 'deleted', title: `Deleted ${ch.key}`, detail: '' };
  const record = parseJsonObject(ch.value);

  if (ch.key.startsWith('loyalty/ticket/') && record) {
    // The register holds the ticket record itself: {id, issuer, issued_to, issued_points,
    // issuer_signature, owner, points, last: {action, ...}}. Its status is not stored: a ticket
    // with no points left is used up.
    const last = record.last && typeof record.last === 'object' ? record.last : {};
    const id = record.id || ch.key.slice('loyalty/ticket/'.length);
    const ticket = `ticket ${shortId(id)}`;
    const owner = shortPk(record.owner);
    const left = record.points ?? '?';
    const usedUp = record.points !== undefined && Number(record.points) === 0;
    switch (last.action) {
      case 'issue':
        return {
          tag: 'issue',
          title: `Issued ${record.issued_points ?? record.points ?? '?'} points`,
          detail: `by ${shop(last.merchant ?? record.issuer)}${atThisShop(last.merchant ?? record.issuer)} to ${owner} · ${ticket}`,
        };
      case 'redeem':
        return {
          tag: 'redeem',
          title: `Redeemed ${last.amount ?? '?'} points`,
          detail: `at ${shop(last.merchant)}${atThisShop(last.merchant)} by ${owner} · ${left} left${usedUp ? ' (used up)' : ''} · ${ticket}`,
        };
      case 'transfer':
        return {
          tag: 'transfer',
          title: `Transferred ${left} points`,
          detail: `${shortPk(last.from)} → ${owner} · ${ticket}`,
        };
      default:
        return { tag: 'ticket', title: `Ticket updated: ${left} points${usedUp ? ', used up' : ''}`, detail: `owner ${owner} · ${ticket}` };
    }
  }

  if (ch.key.startsWith('asset/') && record) {
    // The register holds the asset record: {contract, state: {name, value}, transition, input,
    // actor, signature}, where transition/actor describe the step that produced this state (the
    // API's GET /v1/assets nests them under "last"; the register does not).
    const state = record.state && typeof record.state === 'object' ? record.state : {};
    const stateName = typeof state.name === 'string' ? state.name : '?';
    const value = state.value && typeof state.value === 'object' ? state.value : {};
    const id = ch.key.slice('asset/'.length);
    const what =
      typeof value.tool === 'string' && value.tool
        ? value.tool
        : typeof value.number === 'string' && value.number
          ? `invoice ${value.number}`
          : id;
    const words = CONTRACT_WORDS[record.contract] ?? { label: record.contract ?? 'asset', states: {}, steps: {} };
    const stateWords = inWords(words.states, stateName);
    const step = typeof record.transition === 'string' ? inWords(words.steps, record.transition) : null;
    return {
      tag: stateName.toLowerCase(),
      label: stateWords.toLowerCase(),
      title: `${words.label}: ${what} is ${stateWords.toLowerCase()}`,
      detail: step ? `${step} by ${shortPk(record.actor)} · asset ${id}` : `asset ${id}`,
    };
  }

  let detail;
  if (typeof ch.value === 'string') detail = ch.value.length > 140 ? `${ch.value.slice(0, 140)}…` : ch.value;
  else detail = `${(ch.value_hex || '').length / 2} bytes of binary data`;
  return { tag: 'value', title: ch.key, detail };
}

function addFeedRow(ch) {
  const d = describeChange(ch);
  const row = el(
    'li',
    { class: `feed-item feed-${d.tag}`, dataset: { key: ch.key } },
    el(
      'div',
      { class: 'feed-top' },
      el('span', { class: `tag tag-${d.tag}` }, d.label ?? d.tag),
      el('span', { class: 'feed-title' }, d.title),
      el('time', { class: 'feed-time', datetime: new Date().toISOString() }, clockTime()),
    ),
    d.detail ? el('div', { class: 'feed-detail' }, d.detail) : null,
    el('div', { class: 'feed-meta mono' }, `${ch.key} · view ${ch.view ?? '?'} · round ${ch.round ?? '?'}`),
  );
  const feed = $('feed');
  feed.prepend(row);
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
  $('feed-empty').hidden = true;
}

$('feed-clear').addEventListener('click', () => {
  $('feed').replaceChildren();
  $('feed-empty').hidden = false;
});

// ---- Start ----

setTokenState(token ? 'info' : '', token ? 'saved' : 'no token');
pollStatus();
watchChanges('', addFeedRow, { stateEl: $('feed-state'), errors });
loadNodeInfo(errors).then((i) => {
  info = i;
  showBrowserMember(i.network_id);
});

/** Says which member this browser runs on /member, if any (read from that page's storage). */
async function showBrowserMember(networkId) {
  const name = `beaufort-member-${networkId}`;
  if (!networkId || !indexedDB.databases) return;
  const known = await indexedDB.databases();
  if (!known.some((db) => db.name === name)) return;
  const db = await new Promise((resolve, reject) => {
    const request = indexedDB.open(name);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  if (!db.objectStoreNames.contains('keys')) return db.close();
  const keys = await new Promise((resolve, reject) => {
    const request = db.transaction('keys', 'readonly').objectStore('keys').get('member');
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  db.close();
  if (keys && Number.isInteger(keys.member)) {
    $('browser-member').replaceChildren(
      `This browser is member ${keys.member} of this network: `,
      el('a', { href: '/member' }, 'its votes, neighbours and sync state'),
      '.',
    );
  }
}
