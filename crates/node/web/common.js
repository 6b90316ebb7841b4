// Shared by the dashboard, the wallet and eShare: API calls that fail with readable messages, the
// page's error box, the customer's key pair (kept in IndexedDB), signing, downloads, live updates.
// Server data only ever reaches the page through textContent / text nodes (see `el`), never HTML.

export const $ = (id) => document.getElementById(id);

/** An HTTP or network failure; `status` is 0 when the node could not be reached at all. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** One line a person can act on: the server's own words plus the HTTP status. */
export function describeError(err) {
  if (err instanceof ApiError && err.status > 0) return `${err.message} (HTTP ${err.status})`;
  if (err && typeof err.message === 'string' && err.message) return err.message;
  return String(err);
}

/**
 * Calls the node's JSON API on the same origin. Resolves to the parsed JSON (or the raw text when
 * `text` is set, so a receipt is saved byte for byte); rejects with an ApiError.
 */
export async function api(method, path, { body, token, text = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, `Cannot reach the node (${method} ${path}): ${e.message || e}. Is it running, and is this device online?`);
  }
  let raw = '';
  try {
    raw = await res.text();
  } catch (e) {
    throw new ApiError(0, `The connection to the node broke while reading its answer (${method} ${path}).`);
  }
  if (!res.ok) {
    let message = null;
    try {
      const parsed = JSON.parse(raw);
      if (parsed && typeof parsed.error === 'string') message = parsed.error;
    } catch {
      // Not JSON: a proxy or a crash page; fall through to the raw text.
    }
    if (!message) message = raw.trim().slice(0, 200) || res.statusText || 'request failed';
    if (res.status === 401) message = `Wrong or missing operator token: ${message}`;
    throw new ApiError(res.status, message);
  }
  if (text) return raw;
  if (!raw) return null;
  try {
    return JSON.parse(raw);
  } catch {
    throw new ApiError(res.status, `The node's answer to ${method} ${path} is not valid JSON.`);
  }
}

/** Parses a register value that should be a JSON object; anything else is null. */
export function parseJsonObject(text) {
  if (typeof text !== 'string') return null;
  try {
    const v = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

/**
 * Builds an element. Children that are not Nodes become text nodes, so server strings can never
 * turn into markup. Props: class, text, dataset, on<event>, anything else as an attribute.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

/**
 * The page's error box. Each concern (status polling, a form, the live feed) owns one line, so a
 * later success of one concern clears its own message without hiding another's.
 */
export class ErrorBox {
  constructor(box) {
    this.box = box;
    this.list = box.querySelector('ul');
    this.messages = new Map();
    const dismiss = box.querySelector('button');
    if (dismiss) dismiss.addEventListener('click', () => this.clearAll());
  }

  show(source, err) {
    const text = typeof err === 'string' ? err : describeError(err);
    if (typeof err !== 'string') console.error(`[${source}]`, err);
    this.messages.set(source, text);
    this.render();
  }

  clear(source) {
    if (this.messages.delete(source)) this.render();
  }

  clearAll() {
    this.messages.clear();
    this.render();
  }

  render() {
    this.list.replaceChildren(...[...this.messages.values()].map((m) => el('li', {}, m)));
    this.box.hidden = this.messages.size === 0;
  }
}

/** Disables a button and relabels it while `fn` runs, so a slow commit is not submitted twice. */
export async function busy(button, label, fn) {
  const old = button.textContent;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  button.textContent = label;
  try {
    return await fn();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
    button.textContent = old;
  }
}

/** Fills the header with which member this node is; retries quietly until the node answers. */
export async function loadNodeInfo(errors) {
  const name = $('node-name');
  const detail = $('node-detail');
  for (;;) {
    try {
      const info = await api('GET', '/v1/info');
      name.textContent = info.name || `member-${info.member}`;
      detail.textContent = `member ${info.member} of ${info.members}`;
      if (info.network_id) name.title = `network ${info.network_id}`;
      if (!document.title.endsWith(name.textContent)) document.title += ` · ${name.textContent}`;
      errors.clear('info');
      return info;
    } catch (e) {
      name.textContent = 'node unreachable';
      detail.textContent = '';
      errors.show('info', `Could not ask the node who it is: ${describeError(e)}. Retrying every 5 s.`);
      await new Promise((r) => setTimeout(r, 5000));
    }
  }
}

// ---- Hex, keys and signatures ----

export function bytesToHex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
}

export function hexToBytes(hex) {
  if (typeof hex !== 'string' || hex.length % 2 !== 0 || /[^0-9a-fA-F]/.test(hex)) {
    throw new Error('The node sent a malformed challenge (not hex); nothing was signed.');
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Accepts a pasted key with stray spaces, line breaks, a 0x prefix or capitals. */
export function normalisePk(text) {
  return String(text || '').replace(/\s+/g, '').replace(/^0x/i, '').toLowerCase();
}

/** Why a public key is not acceptable, or null when it looks like an uncompressed P-256 point. */
export function pkProblem(pk, who = 'the customer') {
  if (!pk) return `Enter ${who}'s public key.`;
  if (/[^0-9a-f]/.test(pk)) return `A public key is hexadecimal (only 0-9 and a-f); the one for ${who} is not.`;
  if (pk.length !== 130 || !pk.startsWith('04')) {
    return `A public key is 130 hex characters starting with 04; the one for ${who} has ${pk.length}. Copy it again from the wallet page.`;
  }
  return null;
}

/** A key short enough for a list row; "you" for this browser's own key. */
export function shortPk(pk, mine) {
  if (!pk || typeof pk !== 'string') return '—';
  if (mine && pk === mine) return 'you';
  return pk.length > 14 ? `${pk.slice(0, 12)}…` : pk;
}

export function shortId(id) {
  if (!id || typeof id !== 'string') return '?';
  return id.length > 10 ? `${id.slice(0, 10)}…` : id;
}

const DB_NAME = 'beaufort';
const STORE = 'keys';
const KEY_NAME = 'customer';

function idb(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function openDb() {
  const req = indexedDB.open(DB_NAME, 1);
  req.onupgradeneeded = () => req.result.createObjectStore(STORE);
  return idb(req);
}

async function freshKeyPair() {
  // The private key is not extractable: IndexedDB stores the CryptoKey object itself, so no script
  // (ours included) can ever read its bytes. The public key is always exportable.
  const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
  const pk = bytesToHex(await crypto.subtle.exportKey('raw', pair.publicKey));
  return { privateKey: pair.privateKey, publicKey: pair.publicKey, pk, created: Date.now() };
}

/**
 * This browser's customer key pair, created on first use. Resolves to
 * { privateKey, publicKey, pk, ephemeral } where `ephemeral` means it could not be saved.
 */
export async function loadKeyPair() {
  if (!window.isSecureContext || !window.crypto || !crypto.subtle) {
    throw new Error(
      'This browser only allows signing on secure pages. Open this page over https:// or as ' +
        'http://localhost (not a plain http:// network address) to use your wallet.',
    );
  }
  let db;
  try {
    db = await openDb();
  } catch (e) {
    // Private browsing may refuse IndexedDB: still work, but say the key will not survive.
    console.warn('IndexedDB unavailable', e);
    return { ...(await freshKeyPair()), ephemeral: true };
  }
  const read = () => idb(db.transaction(STORE).objectStore(STORE).get(KEY_NAME));
  let record = await read();
  if (!record) {
    const fresh = await freshKeyPair();
    try {
      // `add` rather than `put`: if another tab created a key at the same moment, keep theirs.
      await idb(db.transaction(STORE, 'readwrite').objectStore(STORE).add(fresh, KEY_NAME));
      record = fresh;
    } catch {
      record = await read();
    }
    // Ask the browser not to evict the key under storage pressure; losing it loses the points.
    if (navigator.storage && navigator.storage.persist) navigator.storage.persist().catch(() => {});
  }
  if (!record || !record.privateKey) throw new Error('Could not load or create your key in this browser.');
  return { ...record, ephemeral: false };
}

/** Signs the exact challenge bytes the node sent; the signature is hex r||s (64 bytes). */
export async function signChallenge(keys, challengeHex) {
  const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, keys.privateKey, hexToBytes(challengeHex));
  return bytesToHex(sig);
}

/** Shows the key in `#my-pk` and wires `#copy-pk` / `#copy-status`. */
export function showMyKey(keys) {
  $('my-pk').textContent = keys.pk;
  $('my-pk').dataset.pk = keys.pk;
  const button = $('copy-pk');
  const status = $('copy-status');
  button.disabled = false;
  button.addEventListener('click', async () => {
    const ok = await copyText(keys.pk);
    status.textContent = ok ? 'Copied.' : 'Could not copy automatically; select the key and copy it by hand.';
    setTimeout(() => (status.textContent = ''), 4000);
  });
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // The async clipboard needs a secure context; the old selection trick still works elsewhere.
    const area = el('textarea', { readonly: true, style: 'position:fixed;opacity:0;top:0;left:0' });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}

/** Saves text as a file without a round trip to the server. */
export function downloadText(filename, text, type = 'application/json') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el('a', { href: url, download: filename, style: 'display:none' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 2000);
}

// ---- Live updates ----

/**
 * Subscribes to committed changes under `prefix`. The browser reconnects EventSource by itself
 * after a drop; we only step in when it gives up (HTTP error) or stays down, so the page says so.
 * `onOpen` runs each time the stream opens, the first time included: the stream carries only
 * what commits after it opened, so a change committed between the page's first load and the
 * opening (or while disconnected) would otherwise never show; the page reloads its state instead.
 */
export function watchChanges(prefix, onChange, { stateEl, errors, onOpen } = {}) {
  const setState = (cls, text) => {
    if (!stateEl) return;
    stateEl.className = `live-state ${cls}`;
    stateEl.textContent = text;
  };
  if (typeof EventSource === 'undefined') {
    setState('off', 'live updates not supported by this browser');
    return;
  }
  let source = null;
  let downTimer = null;
  const connect = () => {
    source = new EventSource(`/v1/watch?prefix=${encodeURIComponent(prefix)}`);
    setState('connecting', 'connecting…');
    source.onopen = () => {
      clearTimeout(downTimer);
      downTimer = null;
      setState('on', 'live');
      if (errors) errors.clear('watch');
      // Changes committed before the stream opened are not replayed: let the page reload its
      // state (the node subscribes before it answers, so nothing falls between the two).
      if (onOpen) onOpen();
    };
    // Changes the node could not replay (this page fell behind, or reconnected with an id the
    // node no longer keeps): reload the state rather than show a silent gap. (EventSource's own
    // reconnects send Last-Event-ID, so the node replays what a short drop missed.)
    source.addEventListener('lagged', () => {
      if (onOpen) onOpen();
    });
    source.addEventListener('change', (ev) => {
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return; // a malformed event must not stop the stream
      }
      if (data && typeof data.key === 'string') onChange(data);
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        setState('off', 'disconnected — retrying');
        if (errors) errors.show('watch', 'Live updates stopped: the node refused the event stream. Retrying every 5 s.');
        setTimeout(connect, 5000);
        return;
      }
      setState('connecting', 'reconnecting…');
      // Retries fail every few seconds; measure from the first failure, not the latest one.
      if (downTimer === null) {
        downTimer = setTimeout(() => {
          downTimer = null;
          if (source.readyState !== EventSource.OPEN && errors) {
            errors.show('watch', 'Live updates lost: cannot reach the node. Still retrying; what you see may be out of date.');
          }
        }, 10000);
      }
    };
  };
  connect();
}

/** Runs `fn` once after a burst of calls, so a flurry of commits costs one refresh. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

export function clockTime(date = new Date()) {
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}
