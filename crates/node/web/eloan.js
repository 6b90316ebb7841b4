// eLoan: a supplier registers an invoice, pledges it to one lender as collateral, and the lender
// releases it once repaid. Every step is signed with the same browser key as the wallet; the
// eLoan contract on the nodes is the judge (one register per invoice, so it is pledged once).
import {
  $, busy, contractPage, describeError, el, ErrorBox, ELOAN_STATE_WORDS, ELOAN_STEP_WORDS, inWords,
  loadKeyPair, loadNodeInfo, normalisePk, pkProblem, shortPk, showMyKey, watchChanges,
} from '/web/common.js';

const CONTRACT = 'eloan';
const errors = new ErrorBox($('error'));
let keys = null;
let invoices = new Map(); // asset id -> Asset

const stateOf = (a) => (a.state && typeof a.state === 'object' ? a.state : {});
const valueOf = (a) => (stateOf(a).value && typeof stateOf(a).value === 'object' ? stateOf(a).value : {});

/**
 * The asset id the contract requires for an invoice (the same rule as the contract's
 * `invoice_asset_id`): each character that is not an ASCII letter or digit becomes "_".
 */
function invoiceAssetId(supplierId, number) {
  const slug = (s) => Array.from(s, (c) => (/^[A-Za-z0-9]$/.test(c) ? c.toLowerCase() : '_')).join('');
  return `invoice-${slug(supplierId)}-${slug(number)}`;
}

const { transition, act, load, scheduleLoad } = contractPage({
  contract: CONTRACT,
  app: 'eLoan',
  noun: 'invoice',
  errors,
  keys: () => keys,
  onAsset: (asset) => {
    invoices.set(asset.id, asset);
    render();
  },
  onAssets: (all) => {
    invoices = all;
    render();
  },
});

// ---- Rendering ----

const invoiceName = (a) => {
  const v = valueOf(a);
  return typeof v.number === 'string' ? `Invoice ${v.number}` : a.id;
};

/** Rows are rebuilt only when their invoice changed, so a lender key being typed survives updates. */
function render() {
  const list = $('invoices');
  const existing = new Map([...list.children].map((row) => [row.dataset.id, row]));
  const sorted = [...invoices.values()].sort((a, b) => a.id.localeCompare(b.id));
  sorted.forEach((asset, i) => {
    const fingerprint = JSON.stringify([asset.state, asset.view, asset.round, asset.last, keys?.pk]);
    let row = existing.get(asset.id);
    if (!row || row.dataset.fingerprint !== fingerprint) {
      const fresh = invoiceRow(asset);
      fresh.dataset.fingerprint = fingerprint;
      if (row) row.replaceWith(fresh);
      row = fresh;
    }
    existing.delete(asset.id);
    if (list.children[i] !== row) list.insertBefore(row, list.children[i] || null);
  });
  for (const stale of existing.values()) stale.remove();
  $('invoices-empty').hidden = invoices.size > 0;
  const pledged = sorted.filter((a) => stateOf(a).name === 'Pledged').length;
  $('invoices-count').textContent = invoices.size ? `(${invoices.size}, ${pledged} pledged)` : '';
}

function invoiceRow(asset) {
  const me = keys?.pk;
  const id = asset.id;
  const st = stateOf(asset).name || '?';
  const v = valueOf(asset);
  const isSupplier = !!me && v.supplier === me;
  const isLender = !!me && v.lender === me;
  const last = asset.last && typeof asset.last === 'object' ? asset.last : null;
  const actions = el('div', { class: 'actions' });
  const forms = [];

  if (st === 'Issued' && isSupplier) {
    const form = pledgeForm(asset);
    forms.push(form);
    actions.append(
      el('button', { type: 'button', class: 'small', id: `pledge-${id}`, onclick: () => openForm(form, `pledge-to-${id}`) }, 'Pledge to a lender…'),
    );
  }
  if (st === 'Pledged' && isLender) {
    actions.append(
      el(
        'button',
        {
          type: 'button',
          class: 'small',
          id: `release-${id}`,
          onclick: (ev) =>
            act(ev.currentTarget, 'Releasing…', `release ${invoiceName(asset)}`, () => transition(id, 'release', {}), () => `${invoiceName(asset)} is released: the loan is repaid, and the invoice can never be pledged again.`),
        },
        'Loan repaid: release',
      ),
    );
  }
  if (st === 'Pledged' && isSupplier) actions.append(el('span', { class: 'small muted' }, 'Pledged by you; the lender releases it once the loan is repaid.'));

  return el(
    'li',
    { class: 'invoice', id: `invoice-${id}`, dataset: { id, state: st } },
    el(
      'div',
      { class: 'item-head' },
      el('span', { class: 'grow' }, `${invoiceName(asset)} · ${v.amount ?? '?'}`),
      el('span', { class: `badge state-${st.toLowerCase()}`, id: `state-${id}` }, inWords(ELOAN_STATE_WORDS, st)),
    ),
    el(
      'div',
      { class: 'item-detail' },
      `Billed to ${typeof v.debtor === 'string' ? v.debtor : '?'} by supplier ${typeof v.supplier_id === 'string' ? v.supplier_id : '?'} (`,
      el('strong', { title: v.supplier || '' }, shortPk(v.supplier, me)),
      ') · Lender: ',
      el('strong', { id: `lender-${id}`, title: v.lender || '' }, v.lender ? shortPk(v.lender, me) : 'none'),
    ),
    el(
      'div',
      { class: 'item-detail' },
      last?.transition ? `${inWords(ELOAN_STEP_WORDS, last.transition)} by ${shortPk(last.actor, me)} · ` : '',
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

function pledgeForm(asset) {
  const id = asset.id;
  const input = el('textarea', { id: `pledge-to-${id}`, rows: 2, spellcheck: 'false', autocomplete: 'off', placeholder: "The lender's public key (04…)" });
  const form = el(
    'form',
    { class: 'inline-form', hidden: true, novalidate: true },
    el('label', { for: `pledge-to-${id}` }, `Pledge ${invoiceName(asset)} to`),
    input,
    el(
      'div',
      { class: 'actions' },
      el('button', { type: 'submit', class: 'small', id: `pledge-confirm-${id}` }, 'Pledge'),
      el('button', { type: 'button', class: 'secondary small', id: `pledge-cancel-${id}`, onclick: () => (form.hidden = true) }, 'Cancel'),
    ),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const lender = normalisePk(input.value);
    const problem = pkProblem(lender, 'the lender');
    if (problem) {
      errors.show('action', problem);
      return;
    }
    act($(`pledge-confirm-${id}`), 'Pledging…', `pledge ${invoiceName(asset)}`, () => transition(id, 'pledge', { lender }), () => `${invoiceName(asset)} is pledged to ${shortPk(lender)}.`);
  });
  return form;
}

// ---- Registering ----

$('register-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const supplierId = $('invoice-supplier').value.trim();
  const number = $('invoice-number').value.trim();
  const debtor = $('invoice-debtor').value.trim();
  const amountText = $('invoice-amount').value.trim();
  const amount = Number(amountText);
  const problem =
    (!supplierId ? 'Enter your supplier id.' : null) ||
    (!number ? 'Enter the invoice number.' : null) ||
    (!debtor ? 'Enter who owes the invoice.' : null) ||
    (!/^\d+$/.test(amountText) || !Number.isSafeInteger(amount) || amount <= 0 ? 'The amount must be a whole number greater than zero.' : null);
  if (problem) {
    errors.show('action', problem);
    return;
  }
  const id = invoiceAssetId(supplierId, number);
  if (id.length > 64) {
    errors.show('action', 'The supplier id and invoice number are too long together; shorten them.');
    return;
  }
  await act($('register-button'), 'Registering…', `register invoice ${number}`, () => transition(id, 'register', { supplier_id: supplierId, number, debtor, amount }), () => {
    $('invoice-number').value = '';
    $('invoice-debtor').value = '';
    $('invoice-amount').value = '';
    return `Registered invoice ${number}. It is free to pledge, once.`;
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
        'This browser refused to store your key (private browsing?). It will be lost when you close this page, and with it your invoices.';
    }
    $('register-button').disabled = false;
  } catch (e) {
    $('my-pk').textContent = 'unavailable';
    errors.show('key', `${describeError(e)} You can still look at the invoices.`);
  }
  await load();
  watchChanges('asset/invoice-', scheduleLoad, { stateEl: $('live-state'), errors, onOpen: scheduleLoad });
})();
