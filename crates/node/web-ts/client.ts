// The web pages' client of the node's HTTP API, written in TypeScript (crates/node/web-ts/client.ts)
// and compiled by tsc to crates/node/web/client.js, the module the pages import: edit the .ts,
// never the .js (crates/node/web-ts/README.md says how to rebuild). Every request and answer type
// comes from the OpenAPI document the node serves (schema.d.ts, generated from openapi.json by
// openapi-typescript), so a route, parameter or field the document does not have fails to
// compile; scripts/check-web-client.sh checks that all three are current.

import type { components, paths } from './schema.js';

/** An HTTP or network failure; `status` is 0 when the node could not be reached at all. */
export class ApiError extends Error {
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

// ---- The document's types ----

type Method = 'get' | 'put' | 'post' | 'delete';
/** The paths of the document that have operation `M`. */
type PathWith<M extends Method> = { [P in keyof paths]: paths[P][M] extends undefined | never ? never : P }[keyof paths];
/** The operation `M` at path `P`. */
type Operation<P extends keyof paths, M extends Method> = NonNullable<paths[P][M]>;
/** The JSON body of a response or request. */
type Json<C> = C extends { content: { 'application/json': infer T } } ? T : never;
/** What a successful answer (200 or 201) carries. */
type Success<O> = O extends { responses: infer R }
  ? (200 extends keyof R ? Json<R[200]> : never) | (201 extends keyof R ? Json<R[201]> : never)
  : never;
/** The request body an operation takes. */
type RequestBody<O> = O extends { requestBody: infer B } ? Json<B> : never;
/** Path and query parameters, as the document names them. */
type PathParams<O> = O extends { parameters: { path: infer T } } ? T : never;
type QueryParams<O> = O extends { parameters: { query?: infer T } } ? T : never;

/** A schema of the document's components, by name. */
export type Schema<N extends keyof components['schemas']> = components['schemas'][N];

/** How one request is made. */
interface Options<O> {
  /** Values for the path's `{name}` segments (a key's slashes stay separators). */
  path?: PathParams<O>;
  /** The query string's parameters; undefined ones are left out. */
  query?: QueryParams<O>;
  /** The JSON body. */
  body?: RequestBody<O>;
  /** The operator's token, sent as `Authorization: Bearer`. */
  token?: string | null;
  /** Another member's API address (`http://host:port`); this page's own node when empty. */
  base?: string;
}

/**
 * The URL of `template` with its parameters filled in and its query string appended. A `{key}`
 * (a store key, the rest of the path) keeps its slashes as separators; any other parameter is one
 * segment.
 */
function url(template: string, path?: object, query?: object, base = ''): string {
  const values = (path ?? {}) as Record<string, unknown>;
  const filled = template.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined || value === null) throw new Error(`missing path parameter ${name}`);
    const text = String(value);
    return name === 'key' ? text.split('/').map(encodeURIComponent).join('/') : encodeURIComponent(text);
  });
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    if (value !== undefined && value !== null) search.append(name, String(value));
  }
  const qs = search.toString();
  return `${base}${filled}${qs ? `?${qs}` : ''}`;
}

/**
 * Calls one operation of the document and resolves to the answer's status and raw text; rejects
 * with an ApiError whose message is the server's own words (its `{"error": ...}`), or why the node
 * could not be reached or read.
 */
async function send(method: Method, template: string, options: Options<unknown>): Promise<{ status: number; raw: string }> {
  const target = url(template, options.path ?? undefined, options.query ?? undefined, options.base);
  const what = `${method.toUpperCase()} ${target}`;
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  if (options.token) headers.Authorization = `Bearer ${options.token}`;
  let res: Response;
  try {
    res = await fetch(target, {
      method: method.toUpperCase(),
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: 'no-store',
    });
  } catch (e) {
    const why = e instanceof Error && e.message ? e.message : String(e);
    throw new ApiError(0, `Cannot reach the node (${what}): ${why}. Is it running, and is this device online?`);
  }
  let raw = '';
  try {
    raw = await res.text();
  } catch {
    throw new ApiError(0, `The connection to the node broke while reading its answer (${what}).`);
  }
  if (!res.ok) {
    let message: string | null = null;
    try {
      const parsed: unknown = JSON.parse(raw);
      if (parsed && typeof parsed === 'object' && typeof (parsed as { error?: unknown }).error === 'string') {
        message = (parsed as { error: string }).error;
      }
    } catch {
      // Not JSON: a proxy or a crash page; fall through to the raw text.
    }
    if (!message) message = raw.trim().slice(0, 200) || res.statusText || 'request failed';
    if (res.status === 401) message = `Wrong or missing operator token: ${message}`;
    throw new ApiError(res.status, message);
  }
  return { status: res.status, raw };
}

/** Calls operation `method` at `path` and resolves to its parsed JSON answer (null if empty). */
export async function call<M extends Method, P extends PathWith<M>>(
  method: M,
  path: P,
  options: Options<Operation<P, M>> = {},
): Promise<Success<Operation<P, M>> | null> {
  const { status, raw } = await send(method, path, options as Options<unknown>);
  if (!raw) return null;
  try {
    return JSON.parse(raw) as Success<Operation<P, M>>;
  } catch {
    throw new ApiError(status, `The node's answer to ${method.toUpperCase()} ${path} is not valid JSON.`);
  }
}

/** Calls a `get` operation and resolves to its answer as text, byte for byte (a receipt to save). */
export async function callText<P extends PathWith<'get'>>(path: P, options: Options<Operation<P, 'get'>> = {}): Promise<string> {
  return (await send('get', path, options as Options<unknown>)).raw;
}

// ---- The operations the pages use ----

type Answer<P extends PathWith<M>, M extends Method> = Success<Operation<P, M>> | null;
type Body<P extends PathWith<M>, M extends Method> = RequestBody<Operation<P, M>>;
type Query<P extends PathWith<M>, M extends Method> = QueryParams<Operation<P, M>>;

/** Which member this node is. */
export const getInfo = (): Promise<Answer<'/v1/info', 'get'>> => call('get', '/v1/info');

/** The node's status (operator). */
export const getStatus = (token: string): Promise<Answer<'/v1/status', 'get'>> => call('get', '/v1/status', { token });

/** The network description: members, their keys and API addresses. */
export const getNetwork = (): Promise<Answer<'/v1/network', 'get'>> => call('get', '/v1/network');

/** The network description as served, byte for byte (what the receipt verifier reads). */
export const getNetworkText = (): Promise<string> => callText('/v1/network');

/** A key's receipt as served, byte for byte: re-serialising could alter numbers a verifier checks. */
export const getReceiptText = (key: string): Promise<string> => callText('/v1/receipts/{key}', { path: { key } });

/** Issues a ticket of `points` to `owner` (operator). */
export const issueTicket = (token: string, body: Body<'/v1/loyalty/tickets', 'post'>): Promise<Answer<'/v1/loyalty/tickets', 'post'>> =>
  call('post', '/v1/loyalty/tickets', { token, body });

/** The tickets `owner` holds. */
export const listTickets = (owner: string): Promise<Answer<'/v1/loyalty/tickets', 'get'>> =>
  call('get', '/v1/loyalty/tickets', { query: { owner } });

/** The bytes the ticket's owner signs for a redemption or a transfer; `base` asks another member. */
export const ticketChallenge = (
  id: string,
  query: Query<'/v1/loyalty/tickets/{id}/challenge', 'get'>,
  base = '',
): Promise<Answer<'/v1/loyalty/tickets/{id}/challenge', 'get'>> =>
  call('get', '/v1/loyalty/tickets/{id}/challenge', { path: { id }, query, base });

/** Redeems points of a ticket with the owner's signature; `base` redeems at another member. */
export const redeemTicket = (
  id: string,
  body: Body<'/v1/loyalty/tickets/{id}/redeem', 'post'>,
  base = '',
): Promise<Answer<'/v1/loyalty/tickets/{id}/redeem', 'post'>> =>
  call('post', '/v1/loyalty/tickets/{id}/redeem', { path: { id }, body, base });

/** Gives a ticket to another key with the owner's signature. */
export const transferTicket = (
  id: string,
  body: Body<'/v1/loyalty/tickets/{id}/transfer', 'post'>,
): Promise<Answer<'/v1/loyalty/tickets/{id}/transfer', 'post'>> =>
  call('post', '/v1/loyalty/tickets/{id}/transfer', { path: { id }, body });

/** A contract's assets. */
export const listAssets = (contract: string): Promise<Answer<'/v1/assets', 'get'>> =>
  call('get', '/v1/assets', { query: { contract } });

/** The bytes an actor signs for a transition of an asset. */
export const assetChallenge = (
  id: string,
  body: Body<'/v1/assets/{id}/challenge', 'post'>,
): Promise<Answer<'/v1/assets/{id}/challenge', 'post'>> => call('post', '/v1/assets/{id}/challenge', { path: { id }, body });

/** Applies a signed transition to an asset. */
export const applyTransition = (
  id: string,
  body: Body<'/v1/assets/{id}/transitions', 'post'>,
): Promise<Answer<'/v1/assets/{id}/transitions', 'post'>> => call('post', '/v1/assets/{id}/transitions', { path: { id }, body });

/** The address of the stream of committed changes under `prefix` (for an EventSource). */
export const watchUrl = (prefix: Query<'/v1/watch', 'get'>['prefix']): string => url('/v1/watch', undefined, { prefix });
