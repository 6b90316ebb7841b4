// Customer wallet: the key pair (shown as a QR code; exported and imported under a passphrase, so
// one wallet works at every shop's page and survives a lost browser), tickets and balance,
// multi-ticket redemption at any merchant of the network (the wallet lives at one origin, but the
// customer shops everywhere), transfers, and receipts that the /verify page (or `beaufort verify`
// offline) checks.
import { getNetwork, getReceiptText, listTickets, redeemTicket, ticketChallenge, transferTicket } from '/web/client.js';
import {
  $, busy, copyText, debounce, decryptWallet, describeError, downloadText, el, ErrorBox,
  exportWallet, loadKeyPair, loadNodeInfo, loadWasm, MIN_PASSPHRASE, normalisePk, parseExportedWallet,
  parseJsonObject, pkProblem, replaceKeyPair, shortId, shortPk, showMyKey, signChallenge, watchChanges,
} from '/web/common.js';

const errors = new ErrorBox($('error'));
let info = null;
let keys = null;
let tickets = [];
// Answers to overlapping refreshes can arrive out of order; only the newest may repaint.
let refreshSeq = 0;
// The network's members as { index, name, url } (url: the member's published API address).
let merchants = [];
// A redemption at another shop commits there first and reaches this node a moment later. Until
// it does, the ticket as that shop returned it is the newer truth: ticket id -> TicketView.
const fresher = new Map();

const isLive = (t) => t.status === 'live' && Number(t.points) > 0;
/** Whether ticket view `a` is newer than `b` (a later view, or a later round of the same view). */
const newerThan = (a, b) =>
  Number(a.view) > Number(b.view) || (Number(a.view) === Number(b.view) && Number(a.round) > Number(b.round));
const ticketKey = (t) => t.key || `loyalty/ticket/${t.id}`;

// ---- Result area ----

/** Shows the outcome of the last action; `items` are { ok, ticket, text } lines. */
function showResult(kind, summary, items = []) {
  const result = $('result');
  result.className = `result ${kind}`;
  result.replaceChildren(el('p', { id: 'result-summary', style: 'margin:0' }, summary));
  if (items.length) {
    result.append(
      el(
        'ul',
        { id: 'result-list' },
        items.map((i) =>
          el('li', { class: `result-item ${i.ok ? 'ok' : 'fail'}`, dataset: { ticket: i.ticket || '' } }, i.text),
        ),
      ),
    );
  }
  $('result-card').hidden = false;
  $('result-card').scrollIntoView({ block: 'nearest', behavior: 'smooth' });
}

// ---- Tickets ----

async function refresh() {
  if (!keys) return;
  const seq = ++refreshSeq;
  try {
    const data = await listTickets(keys.pk);
    if (seq !== refreshSeq) return;
    const listed = Array.isArray(data?.tickets) ? data.tickets : [];
    let patched = false;
    tickets = listed
      .map((t) => {
        const newer = fresher.get(t.id);
        if (newer && newerThan(newer, t)) {
          patched = true;
          return newer;
        }
        fresher.delete(t.id); // this node has caught up
        return t;
      })
      .filter((t) => t.owner === undefined || t.owner === keys.pk);
    const balance =
      !patched && Number.isFinite(Number(data?.balance))
        ? Number(data.balance)
        : tickets.filter(isLive).reduce((sum, t) => sum + Number(t.points), 0);
    $('balance').textContent = String(balance);
    renderTickets();
    errors.clear('tickets');
    return balance;
  } catch (e) {
    if (seq === refreshSeq) errors.show('tickets', `Could not load your tickets: ${describeError(e)}`);
    return null;
  }
}

const scheduleRefresh = debounce(refresh, 300);

/** A member's display name once the network description is loaded, else "member N". */
function merchantName(index) {
  if (index === undefined || index === null) return 'member ?';
  const m = merchants.find((x) => x.index === Number(index));
  return m ? m.name : `member ${index}`;
}

function lastActionText(t) {
  const last = t.last && typeof t.last === 'object' ? t.last : {};
  switch (last.action) {
    case 'issue':
      return `Issued by ${merchantName(last.merchant ?? t.issuer)}`;
    case 'redeem':
      return `Last: ${last.amount ?? '?'} points redeemed at ${merchantName(last.merchant)}`;
    case 'transfer':
      return `Received from ${shortPk(last.from, keys.pk)}`;
    default:
      return '';
  }
}

function renderTickets() {
  // Live tickets in redemption order (smallest first), spent ones after them.
  const sorted = [...tickets].sort((a, b) => isLive(b) - isLive(a) || Number(a.points) - Number(b.points));
  $('tickets').replaceChildren(
    ...sorted.map((t) =>
      el(
        'li',
        {
          class: `ticket ${isLive(t) ? 'live' : 'redeemed'}`,
          id: `ticket-${t.id}`,
          dataset: { id: t.id, status: t.status, points: String(t.points) },
        },
        el(
          'div',
          { class: 'item-head' },
          el('span', { class: 'grow' }, `${t.points} points`),
          el('span', { class: `badge ${isLive(t) ? 'live' : ''}` }, t.status || '?'),
        ),
        el(
          'div',
          { class: 'item-detail' },
          `of ${t.issued_points ?? '?'} issued by ${merchantName(t.issuer)} · ticket `,
          el('code', { title: t.id }, shortId(t.id)),
        ),
        lastActionText(t) ? el('div', { class: 'item-detail' }, lastActionText(t)) : null,
        el(
          'div',
          { class: 'actions' },
          el(
            'button',
            {
              type: 'button',
              class: 'secondary small receipt-button',
              id: `receipt-${t.id}`,
              onclick: (ev) => downloadReceipt(t, ev.currentTarget),
            },
            'Download receipt',
          ),
          el(
            'a',
            {
              class: 'button secondary small check-link',
              id: `check-${t.id}`,
              href: `/verify?key=${encodeURIComponent(ticketKey(t))}`,
            },
            'Check receipt',
          ),
        ),
      ),
    ),
  );
  $('tickets-empty').hidden = tickets.length > 0;
  // Importing another wallet over one that holds tickets needs a deliberate tick.
  $('import-replace-box').hidden = tickets.length === 0;

  // Keep the transfer choice across refreshes when that ticket is still live.
  const select = $('transfer-ticket');
  const chosen = select.value;
  const live = sorted.filter(isLive);
  select.replaceChildren(
    ...(live.length
      ? live.map((t) => el('option', { value: t.id }, `${t.points} points · ticket ${shortId(t.id)}`))
      : [el('option', { value: '' }, 'no live tickets')]),
  );
  if (live.some((t) => t.id === chosen)) select.value = chosen;
}

async function downloadReceipt(t, button) {
  await busy(button, 'Downloading…', async () => {
    try {
      // Saved as received: re-serialising could alter numbers the verifier checks.
      const text = await getReceiptText(ticketKey(t));
      if (!parseJsonObject(text)) throw new Error('The node sent a receipt that is not JSON.');
      downloadText(`receipt-${t.id}.json`, text);
      errors.clear('action');
      showResult('ok', `Saved receipt-${t.id}.json. Check it on the Verify page (/verify): choose the file there.`);
    } catch (e) {
      errors.show('action', `Could not download the receipt of ticket ${shortId(t.id)}: ${describeError(e)}`);
    }
  });
}

// ---- Merchants ----

/** Fills #redeem-merchant from the network description; retries quietly until the node answers. */
async function loadMerchants() {
  const select = $('redeem-merchant');
  for (;;) {
    try {
      const network = await getNetwork();
      const members = Array.isArray(network?.members) ? network.members : [];
      if (members.length === 0) throw new Error('The network description lists no members.');
      merchants = members.map((m, index) => ({
        index,
        name: typeof m?.name === 'string' && m.name ? m.name : `member-${index}`,
        url: typeof m?.api_url === 'string' && m.api_url ? m.api_url : null,
      }));
      errors.clear('merchants');
      if (keys) renderTickets(); // names instead of member numbers
      if (exported) renderExportLinks();
      break;
    } catch (e) {
      // Redeeming here still works without the list: offer this shop alone meanwhile.
      merchants = [{ index: Number(info.member), name: info.name, url: null }];
      errors.show('merchants', `Could not load the list of shops (${describeError(e)}); you can redeem only here for now. Retrying every 10 s.`);
      renderMerchants(select);
      await new Promise((r) => setTimeout(r, 10000));
    }
  }
  renderMerchants(select);
}

function renderMerchants(select) {
  const chosen = select.value === '' ? String(info.member) : select.value;
  select.replaceChildren(
    ...merchants.map((m) =>
      el('option', { value: String(m.index) }, m.index === Number(info.member) ? `${m.name} (this shop)` : m.name),
    ),
  );
  select.value = merchants.some((m) => String(m.index) === chosen) ? chosen : String(info.member);
}

/** The shop chosen in #redeem-merchant; this node's own member until the list has loaded. */
function selectedMerchant() {
  const value = $('redeem-merchant').value;
  const chosen = value === '' ? undefined : merchants.find((m) => String(m.index) === value);
  if (chosen) return chosen;
  return info ? { index: Number(info.member), name: info.name, url: null } : null;
}

/**
 * Where to send a shop's customer calls: '' (this page's own origin) for this node's member or a
 * member that published no API address, else its published address. Throws when that address
 * cannot be called from this page.
 */
function merchantBase(m) {
  if (!m.url || m.index === Number(info.member)) return '';
  let url;
  try {
    url = new URL(m.url);
  } catch {
    throw new Error(`${m.name}'s API address in the network description (${m.url}) is not a URL; nothing was signed.`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`${m.name}'s API address (${m.url}) is not http(s); nothing was signed.`);
  }
  if (window.location.protocol === 'https:' && url.protocol === 'http:') {
    // Browsers block plain-http calls from a secure page (mixed content).
    throw new Error(`${m.name}'s node publishes only a plain http:// address (${url.origin}), which this secure page may not call; nothing was signed.`);
  }
  return url.href.replace(/\/+$/, '');
}

// ---- Redemption ----

/** Smallest live tickets first until they cover `amount`; the last one only partly. */
function planRedemption(amount) {
  const plan = [];
  let left = amount;
  for (const t of tickets.filter(isLive).sort((a, b) => Number(a.points) - Number(b.points))) {
    if (left <= 0) break;
    const take = Math.min(Number(t.points), left);
    plan.push({ ticket: t, amount: take });
    left -= take;
  }
  return left > 0 ? null : plan;
}

/** How often a shop's node that has not yet heard of a ticket is asked again, and how long apart. */
const UNKNOWN_TICKET_TRIES = 5;
const UNKNOWN_TICKET_PAUSE_MS = 1000;

/** Asks the chosen shop's node for the challenge, signs it, and redeems there. */
async function redeemOne(t, amount, merchant) {
  const base = merchantBase(merchant);
  // Signed with the rest: a retry of this redemption is answered with its first outcome and
  // never charged twice, whichever node it reaches.
  const requestId = crypto.randomUUID();
  let ch;
  for (let attempt = 1; ; attempt++) {
    try {
      ch = await ticketChallenge(t.id, { action: 'redeem', amount, request_id: requestId }, base);
      break;
    } catch (e) {
      // A ticket issued a moment ago elsewhere may not have reached that shop's node yet.
      if (e?.status !== 404 || base === '' || attempt >= UNKNOWN_TICKET_TRIES) throw e;
      await new Promise((r) => setTimeout(r, UNKNOWN_TICKET_PAUSE_MS));
    }
  }
  // The bytes are opaque to us, so at least refuse to sign a challenge for something else.
  if (
    (ch.action && ch.action !== 'redeem') ||
    (ch.ticket !== undefined && ch.ticket !== t.id) ||
    (ch.amount !== undefined && Number(ch.amount) !== amount) ||
    (ch.request_id !== undefined && ch.request_id !== requestId)
  ) {
    throw new Error('The node offered a challenge for a different operation; nothing was signed.');
  }
  // The signature names the shop that redeems: never sign for another shop than the one chosen.
  if (ch.merchant === undefined || ch.merchant === null || Number(ch.merchant) !== merchant.index) {
    const noAddress = merchant.url ? '' : ` ${merchant.name} publishes no API address, so this shop's node was asked instead.`;
    throw new Error(
      `The node that answered would record the redemption at member ${ch.merchant ?? '?'}, not at ${merchant.name} (member ${merchant.index}); nothing was signed.${noAddress}`,
    );
  }
  const signature = await signChallenge(keys, ch.challenge_hex);
  const body = { view: ch.view, amount, signature, merchant: ch.merchant, request_id: requestId };
  let ticket;
  try {
    ticket = await redeemTicket(t.id, body, base);
  } catch (e) {
    // No answer at all (the connection dropped): the points may or may not have been taken.
    // The same signed request is safe to send again; it is charged at most once.
    if (e?.status !== 0) throw e;
    ticket = await redeemTicket(t.id, body, base);
  }
  if (ticket && ticket.id === t.id) fresher.set(t.id, ticket);
  return { ticket, merchant: ch.merchant };
}

const REDEEM_HINTS = {
  403: 'the signature was refused',
  404: 'the ticket is unknown',
  409: 'the ticket was already redeemed or changed meanwhile',
  422: 'the amount is larger than what is left on the ticket',
};

$('redeem-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = $('redeem-amount').value.trim();
  const amount = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(amount) || amount <= 0) {
    errors.show('action', 'Enter how many points to redeem: a whole number greater than zero.');
    return;
  }
  const merchant = selectedMerchant();
  if (!merchant) {
    errors.show('action', 'Still connecting to this shop\'s node; try again in a moment.');
    return;
  }
  await busy($('redeem-button'), 'Redeeming…', async () => {
    await refresh(); // plan against the freshest tickets to avoid needless conflicts
    const total = tickets.filter(isLive).reduce((s, t) => s + Number(t.points), 0);
    const plan = planRedemption(amount);
    if (!plan) {
      errors.show('action', `You have ${total} points; you cannot redeem ${amount}.`);
      showResult('fail', `Nothing redeemed: you have ${total} points.`);
      return;
    }
    errors.clear('action');
    // Tickets are independent keys, so they commit in parallel; each succeeds or fails on its own.
    const outcomes = await Promise.allSettled(plan.map((p) => redeemOne(p.ticket, p.amount, merchant)));
    let done = 0;
    const items = outcomes.map((o, i) => {
      const { ticket, amount: part } = plan[i];
      if (o.status === 'fulfilled') {
        done += part;
        const leftOn = o.value.ticket?.points;
        return {
          ok: true,
          ticket: ticket.id,
          text: `Ticket ${shortId(ticket.id)}: ${part} points redeemed${leftOn !== undefined ? `, ${leftOn} left on it` : ''}.`,
        };
      }
      const e = o.reason;
      const hint = REDEEM_HINTS[e?.status];
      return {
        ok: false,
        ticket: ticket.id,
        text: `Ticket ${shortId(ticket.id)}: ${part} points NOT redeemed — ${hint ? `${hint}: ` : ''}${describeError(e)}`,
      };
    });
    const failed = items.filter((i) => !i.ok);
    const balance = await refresh();
    const where = merchant.name;
    const after = balance === null || balance === undefined ? '' : ` New balance: ${balance} points.`;
    if (failed.length === 0) {
      showResult('ok', `Redeemed ${amount} points at ${where}.${after}`, items);
      $('redeem-amount').value = '';
    } else {
      errors.show(
        'redeem',
        `${failed.length} of ${plan.length} tickets could not be redeemed; ${done} of ${amount} points were redeemed. Details under "Last action".`,
      );
      showResult(done > 0 ? 'partial' : 'fail', `Redeemed ${done} of ${amount} points at ${where}.${after}`, items);
    }
  });
});

// ---- Transfer ----

$('transfer-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const id = $('transfer-ticket').value;
  const to = normalisePk($('transfer-to').value);
  const ticket = tickets.find((t) => t.id === id && isLive(t));
  const problem = !ticket
    ? 'Choose one of your live tickets to transfer.'
    : pkProblem(to, 'the recipient') || (to === keys.pk ? 'That is your own key; the ticket is already yours.' : null);
  if (problem) {
    errors.show('action', problem);
    return;
  }
  $('transfer-to').value = to;
  await busy($('transfer-button'), 'Transferring…', async () => {
    try {
      const ch = await ticketChallenge(id, { action: 'transfer', to });
      if ((ch.action && ch.action !== 'transfer') || (ch.to && ch.to !== to)) {
        throw new Error('The node offered a challenge for a different operation; nothing was signed.');
      }
      const signature = await signChallenge(keys, ch.challenge_hex);
      await transferTicket(id, { view: ch.view, to, signature });
      errors.clear('action');
      $('transfer-to').value = '';
      const balance = await refresh();
      showResult(
        'ok',
        `Ticket ${shortId(id)} (${ticket.points} points) now belongs to ${shortPk(to)}${balance !== null && balance !== undefined ? `; your balance: ${balance} points.` : ''}`,
      );
    } catch (e) {
      const hint = e?.status === 409 ? 'the ticket changed meanwhile (refreshed; try again): ' : '';
      errors.show('action', `Transfer of ticket ${shortId(id)} failed: ${hint}${describeError(e)}`);
      showResult('fail', `Ticket ${shortId(id)} was not transferred.`);
      scheduleRefresh();
    }
  });
});

// ---- The key as a QR code ----

/** Shows `keys.pk` as a QR code in #my-qr, drawn by the node's WebAssembly module. */
async function showQr() {
  const img = $('my-qr');
  const pk = keys.pk;
  try {
    const wasm = await loadWasm();
    if (keys.pk !== pk) return; // another key was imported meanwhile
    img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(wasm.qrSvg(pk))}`;
    img.dataset.pk = pk;
    img.hidden = false;
    $('qr-note').hidden = true;
  } catch (e) {
    img.hidden = true;
    $('qr-note').hidden = false;
    $('qr-note').textContent = `No QR code: ${describeError(e)} Copy the key instead.`;
  }
}

// ---- Keeping the wallet: export, import, import links ----

/** The prefix of an import link's fragment; the fragment never reaches any server. */
const LINK_PREFIX = '#wallet=';
let exported = '';

$('export-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const pass = $('export-pass').value;
  const problem =
    pass.length < MIN_PASSPHRASE
      ? `Choose a passphrase of at least ${MIN_PASSPHRASE} characters.`
      : pass !== $('export-pass2').value
        ? 'The two passphrases differ; type the same one twice.'
        : null;
  if (problem) {
    errors.show('keep', problem);
    return;
  }
  await busy($('export-button'), 'Encrypting…', async () => {
    try {
      exported = await exportWallet(keys, pass);
    } catch (e) {
      errors.show('keep', `Could not export your wallet: ${describeError(e)}`);
      return;
    }
    errors.clear('keep');
    $('export-pass').value = '';
    $('export-pass2').value = '';
    $('export-text').value = exported;
    renderExportLinks();
    $('export-result').hidden = false;
    showResult('ok', 'Your wallet is exported. Keep the file or text and its passphrase; together they open your wallet in any browser, at any shop.');
  });
});

/** One link per other shop that opens its wallet page with this export waiting for the passphrase. */
function renderExportLinks() {
  const own = info ? Number(info.member) : -1;
  const links = merchants
    .filter((m) => m.url && m.index !== own)
    .map((m) => {
      let href;
      try {
        href = new URL('/wallet', m.url);
      } catch {
        return null;
      }
      href.hash = `${LINK_PREFIX.slice(1)}${encodeURIComponent(exported)}`;
      return el('li', {}, el('a', { class: 'import-link', href: href.href, dataset: { member: String(m.index) } }, m.name));
    })
    .filter(Boolean);
  $('export-links').replaceChildren(...(links.length ? links : [el('li', { class: 'muted' }, 'no other shop publishes its address')]));
}

$('export-download').addEventListener('click', () => downloadText(`beaufort-wallet-${keys.pk.slice(2, 10)}.json`, exported));
$('export-copy').addEventListener('click', async () => {
  const ok = await copyText(exported);
  showResult(ok ? 'ok' : 'fail', ok ? 'The exported wallet is copied.' : 'Could not copy; select the text and copy it by hand.');
});

$('import-file').addEventListener('change', async () => {
  const file = $('import-file').files[0];
  if (!file) return;
  if (file.size > 64 * 1024) {
    errors.show('keep', `${file.name} is too large to be an exported wallet.`);
    return;
  }
  $('import-text').value = await file.text();
  errors.clear('keep');
});

$('import-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  let wallet;
  try {
    wallet = parseExportedWallet($('import-text').value);
  } catch (e) {
    errors.show('keep', describeError(e));
    return;
  }
  if (wallet.public_key === keys.pk) {
    errors.clear('keep');
    showResult('ok', 'This browser already holds that wallet here.');
    return;
  }
  if (tickets.length > 0 && !$('import-replace').checked) {
    errors.show('keep', 'This browser holds another wallet here, with tickets. Tick "Replace the wallet…" (after exporting it if you want to keep it).');
    return;
  }
  await busy($('import-button'), 'Decrypting…', async () => {
    try {
      const record = await decryptWallet($('import-text').value, $('import-pass').value);
      keys = await replaceKeyPair(record);
    } catch (e) {
      errors.show('keep', `Could not open the exported wallet: ${describeError(e)}`);
      return;
    }
    errors.clear('keep');
    $('import-text').value = '';
    $('import-pass').value = '';
    $('import-file').value = '';
    $('import-replace').checked = false;
    $('export-result').hidden = true;
    exported = '';
    fresher.clear();
    tickets = [];
    showMyKey(keys);
    $('key-warning').hidden = !keys.ephemeral;
    showQr();
    const balance = await refresh();
    showResult('ok', `This is now your wallet here: key ${shortPk(keys.pk)}${balance === null || balance === undefined ? '' : `, ${balance} points`}.`);
  });
});

/** An import link's wallet, moved into the import form and out of the address bar. */
function takeLinkedWallet() {
  if (!window.location.hash.startsWith(LINK_PREFIX)) return;
  let text = '';
  try {
    text = decodeURIComponent(window.location.hash.slice(LINK_PREFIX.length));
  } catch {
    text = '';
  }
  history.replaceState(null, '', window.location.pathname + window.location.search);
  $('import-text').value = text;
  showResult('ok', 'The link carries an exported wallet. Enter its passphrase under "Use a wallet you exported" to use it at this shop.');
  $('import-pass').focus();
}

// ---- Start ----

$('refresh-button').addEventListener('click', () => busy($('refresh-button'), 'Refreshing…', refresh));

loadNodeInfo(errors).then((i) => {
  info = i;
  loadMerchants();
});
takeLinkedWallet();

(async () => {
  try {
    keys = await loadKeyPair();
  } catch (e) {
    $('my-pk').textContent = 'unavailable';
    errors.show('key', describeError(e));
    return; // forms stay disabled: nothing can be signed
  }
  showMyKey(keys);
  showQr();
  if (keys.ephemeral) {
    $('key-warning').hidden = false;
    $('key-warning').textContent =
      'This browser refused to store your key (private browsing?). It will be lost when you close this page, and with it any points issued to it.';
  }
  $('redeem-button').disabled = false;
  $('transfer-button').disabled = false;
  $('export-button').disabled = false;
  $('import-button').disabled = false;
  await refresh();
  // Refresh when a change touches our tickets: points issued to us, or one of ours spent elsewhere.
  watchChanges(
    'loyalty/ticket/',
    (ch) => {
      const record = parseJsonObject(ch.value);
      const ours =
        tickets.some((t) => ticketKey(t) === ch.key) ||
        (record && (record.owner === keys.pk || record.last?.from === keys.pk));
      if (ours) scheduleRefresh();
    },
    { stateEl: $('live-state'), errors, onOpen: scheduleRefresh },
  );
})();
