// eShare: register tools, lend them, confirm returns, report breakage. Every transition is
// signed with the same browser key as the wallet; the contract on the nodes is the judge.
import {
  $, busy, contractPage, bytesToHex, describeError, el, ErrorBox, ESHARE_STATE_WORDS, ESHARE_STEP_WORDS,
  inWords, loadKeyPair, loadNodeInfo, normalisePk, pkProblem, shortPk, showMyKey,
  watchChanges,
} from '/web/common.js';

const CONTRACT = 'eshare';
const errors = new ErrorBox($('error'));
let keys = null;
let assets = new Map(); // asset id -> Asset

const stateOf = (a) => (a.state && typeof a.state === 'object' ? a.state : {});
const valueOf = (a) => (stateOf(a).value && typeof stateOf(a).value === 'object' ? stateOf(a).value : {});
const toolName = (a) => valueOf(a).tool || a.id;

/** An id the contract accepts ([a-z0-9-]{1,64}): readable slug plus randomness against clashes. */
function newAssetId(name) {
  const slug = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 48)
    .replace(/-+$/, '');
  return `${slug || 'tool'}-${bytesToHex(crypto.getRandomValues(new Uint8Array(4)))}`;
}

// ---- Talking to the contract ----

const { transition, act, load, scheduleLoad } = contractPage({
  contract: CONTRACT,
  app: 'eShare',
  noun: 'tool',
  errors,
  keys: () => keys,
  onAsset: (asset) => {
    assets.set(asset.id, asset);
    render();
  },
  onAssets: (all) => {
    assets = all;
    render();
  },
});

// ---- Rendering ----

/**
 * Rows are kept by asset id and rebuilt only when that asset changed, so a live update elsewhere
 * in the list does not wipe a borrower key someone is typing.
 */
function render() {
  const list = $('tools');
  const existing = new Map([...list.children].map((row) => [row.dataset.id, row]));
  const sorted = [...assets.values()].sort((a, b) => toolName(a).localeCompare(toolName(b)) || a.id.localeCompare(b.id));
  sorted.forEach((asset, i) => {
    const fingerprint = JSON.stringify([asset.state, asset.view, asset.round, asset.last, keys?.pk]);
    let row = existing.get(asset.id);
    if (!row || row.dataset.fingerprint !== fingerprint) {
      const fresh = toolRow(asset);
      fresh.dataset.fingerprint = fingerprint;
      if (row) row.replaceWith(fresh);
      row = fresh;
    }
    existing.delete(asset.id);
    // Move only rows that are out of place: moving a node would blur a focused input in it.
    if (list.children[i] !== row) list.insertBefore(row, list.children[i] || null);
  });
  for (const stale of existing.values()) stale.remove();
  $('tools-empty').hidden = assets.size > 0;
  const mine = sorted.filter((a) => valueOf(a).owner === keys?.pk).length;
  $('tools-count').textContent = assets.size ? `(${assets.size}, ${mine} yours)` : '';
}

function toolRow(asset) {
  const me = keys?.pk;
  const id = asset.id;
  const st = stateOf(asset).name || '?';
  const v = valueOf(asset);
  const isOwner = !!me && v.owner === me;
  const isBorrower = !!me && v.borrower === me;
  const wasBorrower = !!me && v.last_borrower === me;
  const last = asset.last && typeof asset.last === 'object' ? asset.last : null;

  const actions = el('div', { class: 'actions' });
  const forms = [];
  const note = (text) => actions.append(el('span', { class: 'small muted' }, text));

  if (st === 'Ready' && isOwner) {
    const form = lendForm(asset);
    forms.push(form);
    actions.append(
      el('button', { type: 'button', class: 'small', id: `lend-${id}`, onclick: () => openForm(form, `lend-to-${id}`) }, 'Lend…'),
    );
  }
  if (st === 'Offered' && isOwner) {
    actions.append(
      el(
        'button',
        {
          type: 'button',
          class: 'small',
          id: `return-${id}`,
          onclick: (ev) =>
            act(ev.currentTarget, 'Confirming…', `confirm the return of ${toolName(asset)}`, () => transition(id, 'return', {}), () => `${toolName(asset)} is back and available to lend again.`),
        },
        'Confirm return',
      ),
    );
  }
  if (st === 'Ready' && (isOwner || wasBorrower)) {
    const form = brokenForm(asset);
    forms.push(form);
    actions.append(
      el('button', { type: 'button', class: 'danger small', id: `broken-${id}`, onclick: () => openForm(form, `broken-note-${id}`) }, 'Report broken…'),
    );
  }
  if (st === 'Offered' && isBorrower) note('You have it. Give it back; the owner then confirms the return.');
  if (st === 'Broken') note('Out of service.');

  return el(
    'li',
    { class: 'tool', id: `tool-${id}`, dataset: { id, state: st, owner: v.owner || '' } },
    el(
      'div',
      { class: 'item-head' },
      el('span', { class: 'grow' }, toolName(asset)),
      el('span', { class: `badge state-${st.toLowerCase()}`, id: `state-${id}` }, inWords(ESHARE_STATE_WORDS, st)),
    ),
    el(
      'div',
      { class: 'item-detail' },
      'Owner: ',
      el('strong', { id: `owner-${id}`, title: v.owner || '' }, shortPk(v.owner, me)),
      ' · Borrower: ',
      el('strong', { id: `borrower-${id}`, title: v.borrower || '' }, v.borrower ? shortPk(v.borrower, me) : 'nobody'),
      v.last_borrower && !v.borrower ? ` · Last borrower: ${shortPk(v.last_borrower, me)}` : '',
    ),
    el(
      'div',
      { class: 'item-detail' },
      last?.transition ? `${inWords(ESHARE_STEP_WORDS, last.transition)} by ${shortPk(last.actor, me)} · ` : '',
      el('code', {}, id),
    ),
    actions,
    ...forms,
  );
}

function openForm(form, focusId) {
  form.hidden = false;
  document.getElementById(focusId)?.focus();
}

function lendForm(asset) {
  const id = asset.id;
  const input = el('textarea', { id: `lend-to-${id}`, rows: 2, spellcheck: 'false', autocomplete: 'off', placeholder: "Borrower's public key (04…)" });
  const form = el(
    'form',
    { class: 'inline-form', hidden: true, novalidate: true },
    el('label', { for: `lend-to-${id}` }, `Lend ${toolName(asset)} to`),
    input,
    el(
      'div',
      { class: 'actions' },
      el('button', { type: 'submit', class: 'small', id: `lend-confirm-${id}` }, 'Lend'),
      el('button', { type: 'button', class: 'secondary small', id: `lend-cancel-${id}`, onclick: () => (form.hidden = true) }, 'Cancel'),
    ),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const borrower = normalisePk(input.value);
    const problem = pkProblem(borrower, 'the borrower') || (borrower === keys.pk ? 'You cannot lend a tool to yourself.' : null);
    if (problem) {
      errors.show('action', problem);
      return;
    }
    act($(`lend-confirm-${id}`), 'Lending…', `lend ${toolName(asset)}`, () => transition(id, 'lend', { borrower }), () => `${toolName(asset)} is lent to ${shortPk(borrower)}`);
  });
  return form;
}

function brokenForm(asset) {
  const id = asset.id;
  const input = el('input', { id: `broken-note-${id}`, type: 'text', maxlength: 200, autocomplete: 'off', placeholder: 'What is wrong? (e.g. motor burnt out)' });
  const form = el(
    'form',
    { class: 'inline-form', hidden: true, novalidate: true },
    el('label', { for: `broken-note-${id}` }, `What is wrong with ${toolName(asset)}?`),
    input,
    el(
      'div',
      { class: 'actions' },
      el('button', { type: 'submit', class: 'danger small', id: `broken-confirm-${id}` }, 'Report broken'),
      el('button', { type: 'button', class: 'secondary small', id: `broken-cancel-${id}`, onclick: () => (form.hidden = true) }, 'Cancel'),
    ),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) {
      errors.show('action', 'Describe briefly what is broken, so the owner knows.');
      return;
    }
    act($(`broken-confirm-${id}`), 'Reporting…', `report ${toolName(asset)} as broken`, () => transition(id, 'report_broken', { note: text }), () => `${toolName(asset)} is marked broken.`);
  });
  return form;
}

// ---- Registering ----

$('register-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = $('tool-name').value.trim();
  if (!name) {
    errors.show('action', 'Give the tool a name, e.g. "Hammer drill".');
    return;
  }
  const id = newAssetId(name);
  await act($('register-button'), 'Registering…', `register "${name}"`, () => transition(id, 'register', { tool: name }), (asset) => {
    $('tool-name').value = '';
    return `Registered "${name}" as ${asset?.id || id}. It is available to lend.`;
  });
});

$('refresh-button').addEventListener('click', () => busy($('refresh-button'), 'Refreshing…', load));

// ---- Start ----

loadNodeInfo(errors);

(async () => {
  try {
    keys = await loadKeyPair();
    showMyKey(keys);
    if (keys.ephemeral) {
      $('key-warning').hidden = false;
      $('key-warning').textContent =
        'This browser refused to store your key (private browsing?). It will be lost when you close this page, and with it the ownership of tools you register.';
    }
    $('register-button').disabled = false;
  } catch (e) {
    $('my-pk').textContent = 'unavailable';
    errors.show('key', `${describeError(e)} You can still look at the tools.`);
  }
  await load();
  watchChanges('asset/', scheduleLoad, { stateEl: $('live-state'), errors, onOpen: scheduleLoad });
})();
