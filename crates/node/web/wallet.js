// Customer wallet: the key pair, tickets and balance, multi-ticket redemption at this node's
// merchant, transfers, and receipts that can be verified offline.
import {
  $, api, busy, debounce, describeError, downloadText, el, ErrorBox, loadKeyPair, loadNodeInfo,
  normalisePk, parseJsonObject, pkProblem, shortId, shortPk, showMyKey, signChallenge, watchChanges,
} from '/web/common.js';

const errors = new ErrorBox($('error'));
let info = null;
let keys = null;
let tickets = [];
// Answers to overlapping refreshes can arrive out of order; only the newest may repaint.
let refreshSeq = 0;

const isLive = (t) => t.status === 'live' && Number(t.points) > 0;
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
    const data = await api('GET', `/v1/loyalty/tickets?owner=${encodeURIComponent(keys.pk)}`);
    if (seq !== refreshSeq) return;
    tickets = Array.isArray(data?.tickets) ? data.tickets : [];
    const balance = Number.isFinite(Number(data?.balance))
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

function lastActionText(t) {
  const last = t.last && typeof t.last === 'object' ? t.last : {};
  switch (last.action) {
    case 'issue':
      return `Issued by member ${last.merchant ?? t.issuer ?? '?'}`;
    case 'redeem':
      return `Last: ${last.amount ?? '?'} points redeemed at member ${last.merchant ?? '?'}`;
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
          `of ${t.issued_points ?? '?'} issued by member ${t.issuer ?? '?'} · ticket `,
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
        ),
      ),
    ),
  );
  $('tickets-empty').hidden = tickets.length > 0;

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
      const text = await api('GET', `/v1/receipts/${ticketKey(t).split('/').map(encodeURIComponent).join('/')}`, { text: true });
      if (!parseJsonObject(text)) throw new Error('The node sent a receipt that is not JSON.');
      downloadText(`receipt-${t.id}.json`, text);
      errors.clear('action');
      showResult('ok', `Saved receipt-${t.id}.json. Check it with: beaufort verify --network network.json receipt-${t.id}.json`);
    } catch (e) {
      errors.show('action', `Could not download the receipt of ticket ${shortId(t.id)}: ${describeError(e)}`);
    }
  });
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

async function redeemOne(t, amount) {
  const id = encodeURIComponent(t.id);
  const ch = await api('GET', `/v1/loyalty/tickets/${id}/challenge?action=redeem&amount=${amount}`);
  // The bytes are opaque to us, so at least refuse to sign a challenge for something else.
  if ((ch.action && ch.action !== 'redeem') || (ch.amount !== undefined && Number(ch.amount) !== amount)) {
    throw new Error('The node offered a challenge for a different operation; nothing was signed.');
  }
  const signature = await signChallenge(keys, ch.challenge_hex);
  const ticket = await api('POST', `/v1/loyalty/tickets/${id}/redeem`, { body: { view: ch.view, amount, signature } });
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
    const outcomes = await Promise.allSettled(plan.map((p) => redeemOne(p.ticket, p.amount)));
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
    const where = info ? info.name : 'this shop';
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
      const path = `/v1/loyalty/tickets/${encodeURIComponent(id)}`;
      const ch = await api('GET', `${path}/challenge?action=transfer&to=${encodeURIComponent(to)}`);
      if ((ch.action && ch.action !== 'transfer') || (ch.to && ch.to !== to)) {
        throw new Error('The node offered a challenge for a different operation; nothing was signed.');
      }
      const signature = await signChallenge(keys, ch.challenge_hex);
      await api('POST', `${path}/transfer`, { body: { view: ch.view, to, signature } });
      errors.clear('action');
      $('transfer-to').value = '';
      const balance = await refresh();
      showResult(
        'ok',
        `Ticket ${shortId(id)} (${ticket.points} points) now belongs to ${shortPk(to)}.${balance !== null && balance !== undefined ? ` Your balance: ${balance} points.` : ''}`,
      );
    } catch (e) {
      const hint = e?.status === 409 ? 'the ticket changed meanwhile (refreshed; try again): ' : '';
      errors.show('action', `Transfer of ticket ${shortId(id)} failed: ${hint}${describeError(e)}`);
      showResult('fail', `Ticket ${shortId(id)} was not transferred.`);
      scheduleRefresh();
    }
  });
});

// ---- Start ----

$('refresh-button').addEventListener('click', () => busy($('refresh-button'), 'Refreshing…', refresh));

loadNodeInfo(errors).then((i) => {
  info = i;
  $('redeem-merchant').textContent = `${i.name} (member ${i.member})`;
});

(async () => {
  try {
    keys = await loadKeyPair();
  } catch (e) {
    $('my-pk').textContent = 'unavailable';
    errors.show('key', describeError(e));
    return; // forms stay disabled: nothing can be signed
  }
  showMyKey(keys);
  if (keys.ephemeral) {
    $('key-warning').hidden = false;
    $('key-warning').textContent =
      'This browser refused to store your key (private browsing?). It will be lost when you close this page, and with it any points issued to it.';
  }
  $('redeem-button').disabled = false;
  $('transfer-button').disabled = false;
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
    { stateEl: $('live-state'), errors, onReopen: scheduleRefresh },
  );
})();
