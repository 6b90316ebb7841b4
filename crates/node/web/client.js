// The web pages' client of the node's HTTP API, written in TypeScript (crates/node/web-ts/client.ts)
// and compiled by tsc to crates/node/web/client.js, the module the pages import: edit the .ts,
// never the .js (crates/node/web-ts/README.md says how to rebuild). Every request and answer type
// comes from the OpenAPI document the node serves (schema.d.ts, generated from openapi.json by
// openapi-typescript), so a route, parameter or field the document does not have fails to
// compile; scripts/check-web-client.sh checks that all three are current.
/** An HTTP or network failure; `status` is 0 when the node could not be reached at all. */
export class ApiError extends Error {
    status;
    constructor(status, message) {
        super(message);
        this.status = status;
    }
}
/**
 * The URL of `template` with its parameters filled in and its query string appended. A `{key}`
 * (a store key, the rest of the path) keeps its slashes as separators; any other parameter is one
 * segment.
 */
function url(template, path, query, base = '') {
    const values = (path ?? {});
    const filled = template.replace(/\{([^}]+)\}/g, (_, name) => {
        const value = values[name];
        if (value === undefined || value === null)
            throw new Error(`missing path parameter ${name}`);
        const text = String(value);
        return name === 'key' ? text.split('/').map(encodeURIComponent).join('/') : encodeURIComponent(text);
    });
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries((query ?? {}))) {
        if (value !== undefined && value !== null)
            search.append(name, String(value));
    }
    const qs = search.toString();
    return `${base}${filled}${qs ? `?${qs}` : ''}`;
}
/**
 * Calls one operation of the document and resolves to the answer's status and raw text; rejects
 * with an ApiError whose message is the server's own words (its `{"error": ...}`), or why the node
 * could not be reached or read.
 */
async function send(method, template, options) {
    const target = url(template, options.path ?? undefined, options.query ?? undefined, options.base);
    const what = `${method.toUpperCase()} ${target}`;
    const headers = { Accept: 'application/json' };
    if (options.body !== undefined)
        headers['Content-Type'] = 'application/json';
    if (options.token)
        headers.Authorization = `Bearer ${options.token}`;
    let res;
    try {
        res = await fetch(target, {
            method: method.toUpperCase(),
            headers,
            body: options.body === undefined ? undefined : JSON.stringify(options.body),
            cache: 'no-store',
        });
    }
    catch (e) {
        const why = e instanceof Error && e.message ? e.message : String(e);
        throw new ApiError(0, `Cannot reach the node (${what}): ${why}. Is it running, and is this device online?`);
    }
    let raw = '';
    try {
        raw = await res.text();
    }
    catch {
        throw new ApiError(0, `The connection to the node broke while reading its answer (${what}).`);
    }
    if (!res.ok) {
        let message = null;
        try {
            const parsed = JSON.parse(raw);
            if (parsed && typeof parsed === 'object' && typeof parsed.error === 'string') {
                message = parsed.error;
            }
        }
        catch {
            // Not JSON: a proxy or a crash page; fall through to the raw text.
        }
        if (!message)
            message = raw.trim().slice(0, 200) || res.statusText || 'request failed';
        if (res.status === 401)
            message = `Wrong or missing operator token: ${message}`;
        throw new ApiError(res.status, message);
    }
    return { status: res.status, raw };
}
/** Calls operation `method` at `path` and resolves to its parsed JSON answer (null if empty). */
export async function call(method, path, options = {}) {
    const { status, raw } = await send(method, path, options);
    if (!raw)
        return null;
    try {
        return JSON.parse(raw);
    }
    catch {
        throw new ApiError(status, `The node's answer to ${method.toUpperCase()} ${path} is not valid JSON.`);
    }
}
/** Calls a `get` operation and resolves to its answer as text, byte for byte (a receipt to save). */
export async function callText(path, options = {}) {
    return (await send('get', path, options)).raw;
}
/** Which member this node is. */
export const getInfo = () => call('get', '/v1/info');
/** The node's status (operator). */
export const getStatus = (token) => call('get', '/v1/status', { token });
/** The network description: members, their keys and API addresses. */
export const getNetwork = () => call('get', '/v1/network');
/** The network description as served, byte for byte (what the receipt verifier reads). */
export const getNetworkText = () => callText('/v1/network');
/** A key's receipt as served, byte for byte: re-serialising could alter numbers a verifier checks. */
export const getReceiptText = (key) => callText('/v1/receipts/{key}', { path: { key } });
/** Issues a ticket of `points` to `owner` (operator). */
export const issueTicket = (token, body) => call('post', '/v1/loyalty/tickets', { token, body });
/** The tickets `owner` holds. */
export const listTickets = (owner) => call('get', '/v1/loyalty/tickets', { query: { owner } });
/** The bytes the ticket's owner signs for a redemption or a transfer; `base` asks another member. */
export const ticketChallenge = (id, query, base = '') => call('get', '/v1/loyalty/tickets/{id}/challenge', { path: { id }, query, base });
/** Redeems points of a ticket with the owner's signature; `base` redeems at another member. */
export const redeemTicket = (id, body, base = '') => call('post', '/v1/loyalty/tickets/{id}/redeem', { path: { id }, body, base });
/** Gives a ticket to another key with the owner's signature. */
export const transferTicket = (id, body) => call('post', '/v1/loyalty/tickets/{id}/transfer', { path: { id }, body });
/** A contract's assets. */
export const listAssets = (contract) => call('get', '/v1/assets', { query: { contract } });
/** The bytes an actor signs for a transition of an asset. */
export const assetChallenge = (id, body) => call('post', '/v1/assets/{id}/challenge', { path: { id }, body });
/** Applies a signed transition to an asset. */
export const applyTransition = (id, body) => call('post', '/v1/assets/{id}/transitions', { path: { id }, body });
/** The address of the stream of committed changes under `prefix` (for an EventSource). */
export const watchUrl = (prefix) => url('/v1/watch', undefined, { prefix });
