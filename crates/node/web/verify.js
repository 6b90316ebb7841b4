// The receipt verifier page (/verify): a receipt is checked in this browser by the WebAssembly
// build of the code `beaufort verify` runs (crates/receipt through crates/wasm), against the
// network's member keys, and its value is shown only from what that check returns. Nothing here
// parses or trusts the receipt's fields itself.

import { getNetworkText, getReceiptText } from './client.js';
import { $, describeError, el, ErrorBox, loadNodeInfo, loadWasm } from './common.js';

const errors = new ErrorBox($('error'));
let verifier = null;

function setNetworkState(state, text) {
  const status = $('network-state');
  status.dataset.state = state;
  status.textContent = text;
}

function describeNetwork(v, source) {
  return `Network “${v.networkName}” (${source}): ${v.members} members, ` +
    `a certificate needs ${v.quorum} of them. Network id ${v.networkId}.`;
}

async function useNetwork(wasm, text, source) {
  const next = new wasm.ReceiptVerifier(text);
  if (verifier) verifier.free();
  verifier = next;
  setNetworkState('ready', describeNetwork(verifier, source));
  clearResult();
}

function clearResult() {
  $('verify-result').hidden = true;
  delete $('verify-result').dataset.state;
  $('verified').hidden = true;
  for (const id of ['verified-key', 'verified-value', 'verified-detail', 'verify-summary']) $(id).textContent = '';
}

function showRefused(reason) {
  clearResult();
  const box = $('verify-result');
  box.className = 'card result fail';
  box.dataset.state = 'refused';
  $('verify-summary').textContent = `Refused: ${reason}. This receipt proves nothing, so its value is not shown.`;
  box.hidden = false;
}

function showVerified(r) {
  clearResult();
  const box = $('verify-result');
  box.className = 'card result ok';
  box.dataset.state = 'verified';
  $('verify-summary').textContent = `Verified: ${r.signers} of ${verifier.members} members of “${verifier.networkName}” certified this value.`;
  $('verified-key').textContent = r.key;
  const value = $('verified-value');
  if (r.deleted) {
    value.textContent = 'deleted';
  } else if (r.text !== undefined) {
    value.replaceChildren(el('pre', { class: 'command' }, r.text));
  } else {
    value.replaceChildren(el('code', {}, `0x${r.hex}`));
  }
  $('verified-detail').textContent = `view ${r.view}, round ${r.round}, signed by ${r.signerNames.join(', ')}`;
  $('verified').hidden = false;
  box.hidden = false;
}

function check() {
  const text = $('receipt-text').value.trim();
  if (!text) {
    showRefused('there is no receipt to check: paste one or choose its file');
    return;
  }
  if (!verifier) {
    showRefused('the verifier is not ready (see “Checked against”)');
    return;
  }
  let result;
  try {
    result = verifier.verify(text);
  } catch (e) {
    showRefused(describeError(e));
    return;
  }
  try {
    showVerified(result);
  } finally {
    result.free();
  }
}

async function readFile(input) {
  const file = input.files && input.files[0];
  if (!file) return null;
  if (file.size > 1 << 20) throw new Error(`${file.name} is larger than 1 MiB`);
  return file.text();
}

async function main() {
  loadNodeInfo(errors);
  $('verify-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    check();
  });
  $('receipt-text').addEventListener('input', clearResult);
  $('receipt-file').addEventListener('change', async (ev) => {
    try {
      const text = await readFile(ev.currentTarget);
      if (text === null) return;
      $('receipt-text').value = text;
      errors.clear('file');
      check();
    } catch (e) {
      errors.show('file', `Could not read the receipt file: ${describeError(e)}`);
    }
  });

  let wasm;
  try {
    wasm = await loadWasm();
  } catch (e) {
    setNetworkState('failed', `The verifier could not be loaded: ${describeError(e)}`);
    return;
  }
  $('network-file').addEventListener('change', async (ev) => {
    try {
      const text = await readFile(ev.currentTarget);
      if (text === null) return;
      await useNetwork(wasm, text, `from ${ev.currentTarget.files[0].name}`);
      errors.clear('network');
    } catch (e) {
      errors.show('network', `That network description cannot be used: ${describeError(e)}`);
    }
  });
  try {
    await useNetwork(wasm, await getNetworkText(), 'from this shop’s node');
  } catch (e) {
    setNetworkState('failed', `Could not load the network's member keys: ${describeError(e)}`);
    return;
  }

  // /verify?key=KEY checks this node's receipt of KEY (the wallet links here).
  const key = new URLSearchParams(window.location.search).get('key');
  if (key) {
    try {
      $('receipt-text').value = await getReceiptText(key);
      check();
    } catch (e) {
      errors.show('receipt', `Could not fetch the receipt of ${key}: ${describeError(e)}`);
    }
  }
}

main();
