// Shared by the dashboard, the wallet, eShare and eLoan: readable API errors, the page's error
// box, the customer's key pair (kept in IndexedDB), signing, downloads, live updates. The API calls
// themselves go through client.js, the typed client compiled from crates/node/web-ts/client.ts
// (its request and answer types come from the node's OpenAPI document).
// Server data only ever reaches the page through textContent / text nodes (see `el`), never HTML.

import { ApiError, applyTransition, assetChallenge, getInfo, listAssets, watchUrl } from './client.js';

export { ApiError };

export const $ = (id) => document.getElementById(id);

/** One line a person can act on: the server's own words plus the HTTP status. */
export function describeError(err) {
  if (err instanceof ApiError && err.status > 0) return `${err.message} (HTTP ${err.status})`;
  if (err && typeof err.message === 'string' && err.message) return err.message;
  return String(err);
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
      const info = await getInfo();
      name.textContent = info.name || `member-${info.member}`;
      detail.textContent = `one of ${info.members} members`;
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

// ---- Words for contract states and steps ----

/** What a person reads for an eShare state (the contract's names are for programs). */
export const ESHARE_STATE_WORDS = { Ready: 'Available', Offered: 'Lent out', Broken: 'Broken' };
/** What a person reads for an eShare step, as in "Lent by …". */
export const ESHARE_STEP_WORDS = {
  register: 'Registered',
  lend: 'Lent',
  return: 'Return confirmed',
  report_broken: 'Reported broken',
};

/** What a person reads for an eLoan state. */
export const ELOAN_STATE_WORDS = { Issued: 'Free to pledge', Pledged: 'Pledged', Released: 'Released' };
/** What a person reads for an eLoan step. */
export const ELOAN_STEP_WORDS = { register: 'Registered', pledge: 'Pledged', release: 'Released (repaid)' };

/** A contract's state or step name in words: the table's, else the name with spaces. */
export function inWords(table, name) {
  if (typeof name !== 'string' || !name) return '?';
  return Object.prototype.hasOwnProperty.call(table, name) ? table[name] : name.replace(/_/g, ' ');
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
  // IndexedDB stores the CryptoKey object itself. The private key is extractable so that its
  // owner can take the wallet along (exportWallet: encrypted under a passphrase, never in the
  // clear); the pages' CSP lets no script but this node's own run on the origin.
  const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
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

/**
 * Makes `record` (from decryptWallet) this origin's customer key, replacing the one stored here.
 * Resolves to the key pair as loadKeyPair returns it.
 */
export async function replaceKeyPair(record) {
  let db;
  try {
    db = await openDb();
  } catch {
    return { ...record, ephemeral: true };
  }
  await idb(db.transaction(STORE, 'readwrite').objectStore(STORE).put(record, KEY_NAME));
  if (navigator.storage && navigator.storage.persist) navigator.storage.persist().catch(() => {});
  return { ...record, ephemeral: false };
}

// ---- Wallet export and import ----
//
// The exported wallet is a small JSON object: the public key in the clear (so a person can see
// whose wallet a file is), and the private key (PKCS #8) encrypted with AES-256-GCM under a key
// derived from the passphrase by PBKDF2-SHA-256 with a random salt; bytes are hex, like every
// key on these pages. The public key is the cipher's additional data, so a file whose public key
// was swapped does not decrypt. `beaufort demo --serve` writes the same format for its demo
// customer (crates/beaufort/src/demo/showcase.rs).

/** The format's name and version, the first field of every exported wallet. */
const WALLET_FORMAT = 'beaufort-wallet-1';
/** PBKDF2 rounds for new exports (OWASP's 2023 figure for SHA-256). */
const WALLET_ITERATIONS = 600000;
/** What an imported file may ask for: fewer is too weak to accept, more would hang the page. */
const MIN_ITERATIONS = 100000;
const MAX_ITERATIONS = 10000000;
/** The shortest passphrase an export accepts. */
export const MIN_PASSPHRASE = 8;

/** Hex of an exported wallet's field, as bytes; throws in words when it is not hex. */
function walletBytes(text, what) {
  if (typeof text !== 'string' || text.length % 2 !== 0 || /[^0-9a-f]/.test(text)) {
    throw new Error(`This is not an exported wallet: its ${what} is not hexadecimal.`);
  }
  return hexToBytes(text);
}

async function passphraseKey(passphrase, salt, iterations, usage) {
  const material = await crypto.subtle.importKey('raw', new TextEncoder().encode(passphrase), 'PBKDF2', false, ['deriveKey']);
  return crypto.subtle.deriveKey(
    { name: 'PBKDF2', hash: 'SHA-256', salt, iterations },
    material,
    { name: 'AES-GCM', length: 256 },
    false,
    [usage],
  );
}

/** The wallet's key pair encrypted under `passphrase`, as the JSON text to save or send. */
export async function exportWallet(keys, passphrase) {
  if (typeof passphrase !== 'string' || passphrase.length < MIN_PASSPHRASE) {
    throw new Error(`Choose a passphrase of at least ${MIN_PASSPHRASE} characters.`);
  }
  let pkcs8;
  try {
    pkcs8 = await crypto.subtle.exportKey('pkcs8', keys.privateKey);
  } catch {
    throw new Error(
      'This wallet was created by an older version of this page, which never let its key leave ' +
        'the browser, so it cannot be exported. Give its tickets to a new wallet instead ("Give a ticket away").',
    );
  }
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const aes = await passphraseKey(passphrase, salt, WALLET_ITERATIONS, 'encrypt');
  const ciphertext = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: new TextEncoder().encode(keys.pk) },
    aes,
    pkcs8,
  );
  return JSON.stringify({
    format: WALLET_FORMAT,
    public_key: keys.pk,
    kdf: { name: 'PBKDF2', hash: 'SHA-256', iterations: WALLET_ITERATIONS, salt: bytesToHex(salt) },
    cipher: { name: 'AES-GCM', iv: bytesToHex(iv) },
    ciphertext: bytesToHex(ciphertext),
  });
}

/** An exported wallet's JSON, checked for shape; throws in words when it is not one. */
export function parseExportedWallet(text) {
  const w = parseJsonObject(typeof text === 'string' ? text.trim() : '');
  if (!w || w.format !== WALLET_FORMAT) {
    throw new Error('This is not an exported Beaufort wallet (a file or text made by "Export your wallet").');
  }
  const problem =
    pkProblem(w.public_key, 'the exported wallet') ||
    (w.kdf?.name !== 'PBKDF2' || w.kdf?.hash !== 'SHA-256' || w.cipher?.name !== 'AES-GCM'
      ? 'The exported wallet uses an encryption this page does not know.'
      : null) ||
    (!Number.isSafeInteger(w.kdf.iterations) || w.kdf.iterations < MIN_ITERATIONS || w.kdf.iterations > MAX_ITERATIONS
      ? `The exported wallet asks for ${w.kdf.iterations} PBKDF2 rounds; only ${MIN_ITERATIONS} to ${MAX_ITERATIONS} are accepted.`
      : null);
  if (problem) throw new Error(problem);
  return w;
}

/**
 * Decrypts an exported wallet with `passphrase` into a key pair record for replaceKeyPair;
 * throws in words on a wrong passphrase or a damaged file.
 */
export async function decryptWallet(text, passphrase) {
  const w = parseExportedWallet(text);
  const salt = walletBytes(w.kdf.salt, 'salt');
  const iv = walletBytes(w.cipher.iv, 'nonce');
  const ciphertext = walletBytes(w.ciphertext, 'ciphertext');
  const aes = await passphraseKey(String(passphrase || ''), salt, w.kdf.iterations, 'decrypt');
  let pkcs8;
  try {
    pkcs8 = await crypto.subtle.decrypt({ name: 'AES-GCM', iv, additionalData: new TextEncoder().encode(w.public_key) }, aes, ciphertext);
  } catch {
    throw new Error('Wrong passphrase, or the exported wallet was changed or cut short.');
  }
  const privateKey = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign']);
  // The public key is recomputed from the private one, not taken from the file.
  const jwk = await crypto.subtle.exportKey('jwk', privateKey);
  const publicKey = await crypto.subtle.importKey(
    'jwk',
    { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, ext: true },
    { name: 'ECDSA', namedCurve: 'P-256' },
    true,
    ['verify'],
  );
  const pk = bytesToHex(await crypto.subtle.exportKey('raw', publicKey));
  if (pk !== w.public_key) throw new Error('The exported wallet is damaged: its key pair does not match its public key.');
  return { privateKey, publicKey, pk, created: Date.now() };
}

// ---- QR codes (the WebAssembly module, shared with /verify) ----

let wasmModule = null;

/** The node's WebAssembly module (QR codes, receipts); rejects with the reason when it is missing. */
export async function loadWasm() {
  if (!wasmModule) {
    wasmModule = import('/web/beaufort_wasm.js').then(async (wasm) => {
      await wasm.default();
      return wasm;
    });
    wasmModule.catch(() => (wasmModule = null));
  }
  return wasmModule;
}

/** Signs the exact challenge bytes the node sent; the signature is hex r||s (64 bytes). */
export async function signChallenge(keys, challengeHex) {
  const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, keys.privateKey, hexToBytes(challengeHex));
  return bytesToHex(sig);
}

/**
 * Shows the key in `#my-pk` and wires `#copy-pk` / `#copy-status` (once: the button copies
 * whatever key `#my-pk` shows, so showing another key after an import needs no new wiring).
 */
export function showMyKey(keys) {
  $('my-pk').textContent = keys.pk;
  $('my-pk').dataset.pk = keys.pk;
  const button = $('copy-pk');
  const status = $('copy-status');
  button.disabled = false;
  if (button.dataset.wired) return;
  button.dataset.wired = 'yes';
  button.addEventListener('click', async () => {
    const ok = await copyText($('my-pk').dataset.pk);
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
    source = new EventSource(watchUrl(prefix));
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

/**
 * What a contract's page (eShare, eLoan) does with the nodes: one signed transition (challenge,
 * sign, submit), a user action run with its button busy and its outcome in #result and #error,
 * and the reload of the contract's assets, the latest load winning. `app` and `noun` put the
 * contract and its assets into the messages ("the eShare contract refused", "the tool changed
 * meanwhile"); `keys()` is the signing key pair once loaded; `onAsset` gets each asset a
 * transition returns and `onAssets` the whole list, keyed by id, after each load.
 */
export function contractPage({ contract, app, noun, errors, keys, onAsset, onAssets }) {
  let loadSeq = 0;

  function showResult(kind, text) {
    const result = $('result');
    result.className = `result ${kind}`;
    result.textContent = text;
  }

  async function transition(id, name, input) {
    const pair = keys();
    const body = { contract, transition: name, input, actor: pair.pk };
    const ch = await assetChallenge(id, body);
    const signature = await signChallenge(pair, ch.challenge_hex);
    const asset = await applyTransition(id, { ...body, view: ch.view, signature });
    if (asset && asset.id) onAsset(asset);
    return asset;
  }

  async function load() {
    const seq = ++loadSeq;
    try {
      const data = await listAssets(contract);
      if (seq !== loadSeq) return;
      const list = Array.isArray(data) ? data : Array.isArray(data?.assets) ? data.assets : [];
      onAssets(new Map(list.filter((a) => a && a.id && (!a.contract || a.contract === contract)).map((a) => [a.id, a])));
      errors.clear('load');
    } catch (e) {
      if (seq === loadSeq) errors.show('load', `Could not load the ${noun}s: ${describeError(e)}`);
    }
  }

  async function act(button, busyLabel, what, fn, success) {
    await busy(button, busyLabel, async () => {
      try {
        const asset = await fn();
        errors.clear('action');
        showResult('ok', success(asset));
      } catch (e) {
        let why = describeError(e);
        if (e?.status === 422) why = `the ${app} contract refused: ${why}`;
        else if (e?.status === 409) why = `the ${noun} changed meanwhile (list refreshed; try again): ${why}`;
        else if (e?.status === 403) why = `the signature was not accepted: ${why}`;
        errors.show('action', `Could not ${what}: ${why}`);
        showResult('fail', `Could not ${what}.`);
        load();
      }
    });
  }

  return { transition, act, load, scheduleLoad: debounce(load, 300), showResult };
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
