// The browser member page (/member): this browser runs a member of the consortium. The member
// itself (core, BLS, validation, libp2p over WebSocket) is the WebAssembly module built from
// crates/browser; this script only keeps its keys and state in IndexedDB and shows what it does.
//
// The ordering contract of every member: a step's records are written here in one IndexedDB
// transaction with strict durability, and the promise the member waits on resolves only when
// that transaction completed, so no own vote leaves before it is stored. One tab at a time runs
// a member (a Web Lock), so two tabs never vote as the same member.

import { getNetworkText } from './client.js';
import { $, describeError, el, ErrorBox, loadNodeInfo } from './common.js';

const errors = new ErrorBox($('error'));
const STORES = ['keys', 'registers', 'evidence'];
let member = null;
let db = null;
let network = null;
let networkIdHex = null;
let wasm = null;
let releaseLock = null;

function setState(state, text) {
  const status = $('member-state');
  status.dataset.state = state;
  status.textContent = text;
}

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function openDb(name) {
  const request = indexedDB.open(name, 1);
  request.onupgradeneeded = () => {
    for (const store of STORES) {
      if (!request.result.objectStoreNames.contains(store)) request.result.createObjectStore(store);
    }
  };
  return done(request);
}

function transactionDone(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error('the IndexedDB transaction was aborted'));
  });
}

/** Every [key, value] of one object store, keys and values as bytes. */
function readAll(store) {
  return new Promise((resolve, reject) => {
    const out = [];
    const request = db.transaction(store, 'readonly').objectStore(store).openCursor();
    request.onerror = () => reject(request.error);
    request.onsuccess = () => {
      const cursor = request.result;
      if (!cursor) return resolve(out);
      out.push([new Uint8Array(cursor.key), new Uint8Array(cursor.value)]);
      cursor.continue();
    };
  });
}

/** The member's persist callback: one transaction, resolved when durable. */
function persist(records) {
  const tx = db.transaction(['registers', 'evidence'], 'readwrite', { durability: 'strict' });
  const finished = transactionDone(tx);
  for (const [store, key, value] of records) tx.objectStore(store).put(value.slice(), key.slice().buffer);
  return finished;
}

async function savedKeys() {
  const tx = db.transaction('keys', 'readonly');
  return done(tx.objectStore('keys').get('member'));
}

async function saveKeys(keys) {
  const tx = db.transaction('keys', 'readwrite', { durability: 'strict' });
  const finished = transactionDone(tx);
  tx.objectStore('keys').put(keys, 'member');
  return finished;
}

function feed(text) {
  const list = $('member-feed');
  list.prepend(el('li', {}, `${new Date().toLocaleTimeString()} ${text}`));
  while (list.children.length > 50) list.lastChild.remove();
}

function onEvent(json) {
  const event = JSON.parse(json);
  if (event.type === 'decision') {
    feed(`decided “${event.key}” in view ${event.view}${event.mine ? ' (our write)' : ''}`);
  } else if (event.type === 'peer') {
    feed(`member ${event.member} ${event.up ? 'connected' : 'disconnected'}`);
  } else if (event.type === 'stopped') {
    setState('failed', `The member stopped: ${event.reason}`);
    errors.show('member', `The member stopped: ${event.reason}`);
  }
}

function render() {
  if (!member) return;
  const s = JSON.parse(member.status());
  $('member-index').textContent = String(s.member);
  $('member-restored').textContent = String(s.restored_keys);
  $('member-neighbours').textContent = s.neighbours.length ? s.neighbours.join(', ') : 'none yet';
  $('member-neighbours').dataset.count = String(s.neighbours.length);
  $('member-votes').textContent = String(s.votes_cast);
  $('member-keys').textContent = String(s.keys);
  $('member-decisions').textContent = String(s.decisions);
  $('member-sent').textContent = String(s.messages_sent);
  $('member-received').textContent = String(s.messages_received);
  $('member-root').textContent = s.merkle_root;
  $('member-excluded').textContent = s.excluded.length ? s.excluded.join(', ') : 'none';
}

/** Holds this network's member lock until the member stops; false if another tab holds it. */
async function takeLock(name) {
  if (!navigator.locks) return true;
  return new Promise((resolve) => {
    navigator.locks.request(name, { ifAvailable: true }, (lock) => {
      if (!lock) {
        resolve(false);
        return undefined;
      }
      resolve(true);
      return new Promise((release) => (releaseLock = release));
    });
  });
}

async function start(keys) {
  const who = JSON.parse(wasm.identify(network, keys.bls));
  if (!(await takeLock(`beaufort-member-${networkIdHex}`))) {
    throw new Error(`member ${who.member} already runs in another tab of this browser`);
  }
  const registers = await readAll('registers');
  const evidence = await readAll('evidence');
  member = new wasm.BrowserMember(network, keys.bls, keys.p2p, registers, evidence, persist, onEvent);
  $('keys-card').hidden = true;
  $('member-panel').hidden = false;
  $('write-button').disabled = false;
  setState('running', `This browser is member ${who.member} of “${who.network}” (${who.members} members); ` +
    `it dials ${member.dialable} of them over WebSocket.`);
  feed(`started as member ${who.member}, ${registers.length} keys restored from this browser`);
  render();
}

async function readFileInto(input, textarea) {
  const file = input.files && input.files[0];
  if (file) textarea.value = await file.text();
}

async function main() {
  loadNodeInfo(errors);
  try {
    wasm = await import('/web/beaufort_browser.js');
    await wasm.default();
    network = await getNetworkText();
    networkIdHex = wasm.networkId(network);
    db = await openDb(`beaufort-member-${networkIdHex}`);
  } catch (e) {
    setState('failed', `The member cannot load: ${describeError(e)}`);
    return;
  }
  $('bls-key-file').addEventListener('change', () => readFileInto($('bls-key-file'), $('bls-key-text')));
  $('p2p-key-file').addEventListener('change', () => readFileInto($('p2p-key-file'), $('p2p-key-text')));
  $('keys-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    errors.clear('keys');
    const keys = { bls: $('bls-key-text').value, p2p: $('p2p-key-text').value.trim() };
    try {
      // The member's index is kept beside the keys, so the dashboard can say which one runs here.
      keys.member = JSON.parse(wasm.identify(network, keys.bls)).member;
      await saveKeys(keys);
      // The secret key is kept in IndexedDB only, not left in the page.
      $('bls-key-text').value = '';
      $('p2p-key-text').value = '';
      $('bls-key-file').value = '';
      $('p2p-key-file').value = '';
      await start(keys);
    } catch (e) {
      errors.show('keys', `These keys cannot run a member here: ${describeError(e)}`);
    }
  });
  $('write-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = $('write-key').value;
    const value = $('write-value').value;
    $('write-result').textContent = `Proposing “${key}”…`;
    try {
      const result = JSON.parse(await member.put(key, value));
      $('write-result').textContent = `Committed “${result.key}” in view ${result.view}, ` +
        `certified by members ${result.signers.join(', ')}.`;
    } catch (e) {
      $('write-result').textContent = `Not committed: ${describeError(e)}`;
    }
  });
  $('stop-button').addEventListener('click', () => {
    if (member) member.stop();
    member = null;
    if (releaseLock) releaseLock();
    $('write-button').disabled = true;
    setState('stopped', 'The member stopped; its state stays in this browser. Reload to run it again.');
  });
  setInterval(render, 500);
  const keys = await savedKeys();
  if (keys) {
    try {
      await start(keys);
    } catch (e) {
      setState('failed', `The stored member cannot start: ${describeError(e)}`);
    }
  } else {
    setState('keys', 'This browser runs no member of this network yet: give it a member\u2019s keys.');
  }
}

main();
