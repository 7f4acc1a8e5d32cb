// The Sesame protocol, version 1, for the web authenticator.
// docs/PROTOCOL.md is the specification of every byte; section numbers (§)
// below refer to it, and §3.6 (links) and §14 (number matching) to the
// draft that adds them. No dependencies: signatures use WebCrypto's Ed25519;
// the strict key and signature checks it lacks are in protocol-ed25519.js.
//
// Exported API (byte strings are Uint8Array; ids are lowercase hex; times BigInt):
//
//   class ProtocolError extends Error      .code = a §7 error code, .message = text for a person
//   errorMessage(code) -> string           the sentence for a code, also one the server sent
//   b64urlEncode(bytes) -> string
//   b64urlDecode(text) -> Uint8Array                                 throws 'bad_encoding'
//   readInput(text) -> { token, linkOrigin }                         bare token or link (§3.6)
//   decodeToken(text) -> DecodedToken                                §3.4 steps 1–9, then the link's origin
//   decodeBareToken(text) -> DecodedToken                            the same without links, as for a request's token
//   keyId(publicKeyBytes) -> Promise<string>                         16 hex digits (§2.2)
//   checkPublicKey(bytes) -> bytes                                   §2.3: 'invalid_public_key' / 'weak_public_key'
//   verifySignature(publicKey, message, signature) -> Promise<bool>  strict (§2.4)
//   verifyToken(decoded, serverPublicKeyBytes, now, leeway) -> Promise<void>   §3.4 steps 10–12
//   signedBytes(purpose, fields) -> Uint8Array                       §4 (+ number, §14)
//   signAnswer(purpose, decoded, options) -> Promise<object>         request body, §6.3–6.5, §12.1, §13.1
//   verifyAnswer(purpose, request, { tokenDecoded, accountPublicKeyBytes }) -> Promise<void>
//   confirmationCode(challengeIdBytes, publicKeyBytes) -> Promise<string>   six digits (§11)
//   checkAccountName(name) -> name                                   'invalid_account_name'
//   checkKeyLabel(label) -> label                                    'invalid_key_label'
//   checkOrigin(text) -> text                                        'invalid_origin'
//   readNumber(typedText) -> number                                  10–99, else 'invalid_number' (§14)
//   hexToBytes(hex) -> Uint8Array, bytesToHex(bytes) -> string
//
// Errors that are programming mistakes (an unknown purpose, a missing key)
// are TypeErrors, not ProtocolErrors: no person can fix them.

import { ProtocolError, errorMessage } from './protocol-error.js';
import {
  utf8, fromUtf8, trimWhiteSpace, removeWhiteSpace, isOrigin, checkOrigin, checkAccountName, checkKeyLabel, checkServiceName,
} from './protocol-names.js';
import { checkPublicKey, verifySignature, sign, publicKeyBytesOf } from './protocol-ed25519.js';

/**
 * A token decoded by decodeToken. Nothing in it may be trusted before verifyToken.
 * @typedef {object} DecodedToken
 * @property {string} text the token text alone (never the link): what is signed and sent
 * @property {string|null} linkOrigin the link's origin, or null for a bare token
 * @property {{version: number, key_id: string, issued_at: bigint, expires_at: bigint, rotation: number,
 *   challenge_id: string, nonce: string, service_id: string, origin: string, service_name: string}} claims
 * @property {number} step the code's step (u32)
 * @property {Uint8Array} code the 10-byte code
 * @property {Uint8Array} body the signed part of base_bytes, without the signature
 * @property {Uint8Array} signature the server's 64-byte signature
 */

export { ProtocolError, errorMessage, checkOrigin, checkAccountName, checkKeyLabel, checkPublicKey, verifySignature };

const TOKEN_PREFIX = 'sesame1.';
const MAX_TOKEN_BYTES = 512;
const APP_PATH = '/app';
// The longest origin, "/app#" and the longest token (§3.6).
const MAX_LINK_BYTES = 100 + APP_PATH.length + 1 + MAX_TOKEN_BYTES;
const MAX_LIFETIME = 600n;
const CODE_LENGTH = 10;
const SIGNATURE_LENGTH = 64;
const TAGS = {
  register: 'sesame/1/register',
  login: 'sesame/1/login',
  deny: 'sesame/1/deny',
  enroll: 'sesame/1/enroll',
  rekey: 'sesame/1/rekey',
};

// ---------------------------------------------------------------- bytes

/** Lowercase hex of `bytes`. */
export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Bytes of lowercase hex text; throws TypeError on anything else. */
export function hexToBytes(hex) {
  if (typeof hex !== 'string' || !/^(?:[0-9a-f]{2})*$/.test(hex)) throw new TypeError('expected lowercase hex');
  return Uint8Array.from(hex.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** `tag ‖ 0x00` of every domain-separated message. */
const tagged = (tag) => concat(utf8(tag), [0]);

function str8(bytes) {
  if (bytes.length > 0xff) throw new TypeError('str8 holds at most 255 bytes');
  return concat([bytes.length], bytes);
}

function str16(bytes) {
  if (bytes.length > 0xffff) throw new TypeError('str16 holds at most 65535 bytes');
  return concat([bytes.length >> 8, bytes.length & 0xff], bytes);
}

async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', concat(...parts)));
}

// ---------------------------------------------------------------- base64url

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * base64url without padding (§2).
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function b64urlEncode(bytes) {
  let text = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      text += ALPHABET[(value >> bits) & 63];
    }
    value &= (1 << bits) - 1;
  }
  return bits > 0 ? text + ALPHABET[(value << (6 - bits)) & 63] : text;
}

/**
 * Decodes canonical base64url (§2): no padding, only the URL-safe alphabet,
 * zero unused bits, so each byte string has exactly one text. Anything else
 * throws ProtocolError 'bad_encoding'.
 * @param {string} text
 * @returns {Uint8Array}
 */
export function b64urlDecode(text) {
  if (typeof text !== 'string' || text.length % 4 === 1) throw new ProtocolError('bad_encoding');
  const out = new Uint8Array(Math.floor((text.length * 6) / 8));
  let bits = 0;
  let value = 0;
  let offset = 0;
  for (const char of text) {
    const digit = ALPHABET.indexOf(char);
    if (digit < 0) throw new ProtocolError('bad_encoding');
    value = ((value << 6) | digit) & 0xffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[offset++] = (value >> bits) & 0xff;
    }
  }
  if ((value & ((1 << bits) - 1)) !== 0) throw new ProtocolError('bad_encoding');
  return out;
}

// ---------------------------------------------------------------- token

/**
 * Reads what a person pasted or scanned (§3.6): a bare token, or a link
 * `origin "/app#" token`. White space (§2.1) is removed wherever it stands.
 * Throws ProtocolError 'not_a_token', 'token_too_long' (a link above 617
 * bytes) or 'bad_link'. The token part is not decoded here.
 * @param {string} text
 * @returns {{token: string, linkOrigin: string|null}}
 */
export function readInput(text) {
  const input = removeWhiteSpace(text);
  if (input.startsWith(TOKEN_PREFIX)) return { token: input, linkOrigin: null };
  if (!input.startsWith('https://') && !input.startsWith('http://')) throw new ProtocolError('not_a_token');
  if (utf8(input).length > MAX_LINK_BYTES) throw new ProtocolError('token_too_long');
  const hash = input.indexOf('#');
  if (hash < 0) throw new ProtocolError('bad_link');
  const address = input.slice(0, hash);
  const origin = address.slice(0, -APP_PATH.length);
  if (!address.endsWith(APP_PATH) || !isOrigin(origin)) throw new ProtocolError('bad_link');
  return { token: input.slice(hash + 1), linkOrigin: origin };
}

/**
 * Decodes a token or a link to one: §3.4 steps 1–9 in their order, then,
 * for a link, the check that the link names the token's origin
 * ('link_origin_mismatch'). Nothing in the result may be trusted before
 * verifyToken. Throws ProtocolError with the one code of the first failure.
 * @param {string} text as pasted or scanned
 * @returns {DecodedToken}
 */
export function decodeToken(text) {
  const { token, linkOrigin } = readInput(text);
  const decoded = decodeTrimmed(token);
  if (linkOrigin !== null && linkOrigin !== decoded.claims.origin) throw new ProtocolError('link_origin_mismatch');
  return { ...decoded, linkOrigin };
}

/**
 * Decodes a token text alone, as the server reads a request's `token`
 * member (§3.4 steps 1–9): a link is 'not_a_token' here.
 * @param {string} text
 * @returns {DecodedToken} with linkOrigin null
 */
export function decodeBareToken(text) {
  return { ...decodeTrimmed(removeWhiteSpace(text)), linkOrigin: null };
}

/** §3.4 steps 2–9 on a text whose white space is already removed. */
function decodeTrimmed(text) {
  if (!text.startsWith(TOKEN_PREFIX)) throw new ProtocolError('not_a_token');
  if (utf8(text).length > MAX_TOKEN_BYTES) throw new ProtocolError('token_too_long');
  const rest = text.slice(TOKEN_PREFIX.length);
  const dot = rest.indexOf('.');
  if (dot <= 0 || dot === rest.length - 1) throw new ProtocolError('truncated');
  // Both parts are decoded before any byte is read, so a damaged copy is
  // reported as damaged rather than as whatever its bytes happen to mean.
  const baseBytes = b64urlDecode(rest.slice(0, dot));
  const freshBytes = b64urlDecode(rest.slice(dot + 1));
  const layout = readLayout(baseBytes);
  const fresh = new Reader(freshBytes);
  const step = fresh.u32();
  const code = fresh.take(CODE_LENGTH);
  fresh.finish();
  return { text, claims: checkFields(layout), step, code, body: layout.body, signature: layout.signature };
}

/** Reads bytes front to back: running out is 'truncated', leftovers 'trailing_bytes'. */
class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.offset = 0;
  }

  take(n) {
    if (this.offset + n > this.bytes.length) throw new ProtocolError('truncated');
    this.offset += n;
    return this.bytes.slice(this.offset - n, this.offset);
  }

  u8() {
    return this.take(1)[0];
  }

  u32() {
    return new DataView(this.take(4).buffer).getUint32(0);
  }

  u64() {
    return new DataView(this.take(8).buffer).getBigUint64(0);
  }

  str8() {
    return this.take(this.u8());
  }

  finish() {
    if (this.offset !== this.bytes.length) throw new ProtocolError('trailing_bytes');
  }
}

/**
 * §3.4 steps 6–7: the version, then every field of §3.2 as it lies. Only
 * the version is judged on the way, since another version may lay out its
 * bytes another way.
 */
function readLayout(bytes) {
  const reader = new Reader(bytes);
  const version = reader.u8();
  if (version !== 1) throw new ProtocolError('unsupported_version');
  const layout = {
    version,
    keyId: reader.take(8),
    issuedAt: reader.u64(),
    expiresAt: reader.u64(),
    rotation: reader.u8(),
    challengeId: reader.take(16),
    nonce: reader.take(16),
    serviceId: reader.take(16),
    origin: reader.str8(),
    serviceName: reader.str8(),
  };
  layout.body = bytes.slice(0, reader.offset);
  layout.signature = reader.take(SIGNATURE_LENGTH);
  reader.finish();
  return layout;
}

/** §3.4 step 9: each field's rule, in the order of the table of §3.2. */
function checkFields(layout) {
  const { issuedAt, expiresAt, rotation } = layout;
  if (expiresAt <= issuedAt || expiresAt - issuedAt > MAX_LIFETIME) throw new ProtocolError('lifetime_too_long');
  if (rotation < 1 || rotation > 60) throw new ProtocolError('invalid_rotation');
  const origin = fromUtf8(layout.origin);
  if (origin === null) throw new ProtocolError('invalid_origin');
  checkOrigin(origin);
  const serviceName = fromUtf8(layout.serviceName);
  if (serviceName === null) throw new ProtocolError('invalid_service_name');
  checkServiceName(serviceName);
  return {
    version: layout.version,
    key_id: bytesToHex(layout.keyId),
    issued_at: issuedAt,
    expires_at: expiresAt,
    rotation,
    challenge_id: bytesToHex(layout.challengeId),
    nonce: bytesToHex(layout.nonce),
    service_id: bytesToHex(layout.serviceId),
    origin,
    service_name: serviceName,
  };
}

/**
 * The key id of a public key (§2.2): 16 lowercase hex digits.
 * @param {Uint8Array} publicKeyBytes
 * @returns {Promise<string>}
 */
export async function keyId(publicKeyBytes) {
  return bytesToHex((await sha256(tagged('sesame/1/key-id'), publicKeyBytes)).subarray(0, 8));
}

/**
 * §3.4 steps 10–12 for a decoded token: its key id is that of the pinned
 * server key ('unknown_signing_key'), its signature verifies strictly
 * ('bad_token_signature'), and it is neither expired ('token_expired') nor
 * issued in the future ('token_not_yet_valid') at `now`, allowing `leeway`
 * seconds. The pinned key itself is checked first (§2.3:
 * 'invalid_public_key', 'weak_public_key'). Times are exact BigInts, so a
 * sum above 2^64 − 1 is simply later than every time.
 * @param {DecodedToken} decoded
 * @param {Uint8Array} serverPublicKeyBytes the key pinned for decoded.claims.origin
 * @param {bigint} now Unix seconds
 * @param {bigint} leeway seconds; the server allows 0
 * @returns {Promise<void>}
 */
export async function verifyToken(decoded, serverPublicKeyBytes, now, leeway) {
  const { claims } = decoded;
  checkPublicKey(serverPublicKeyBytes);
  if ((await keyId(serverPublicKeyBytes)) !== claims.key_id) throw new ProtocolError('unknown_signing_key');
  const signed = concat(tagged('sesame/1/token'), decoded.body);
  if (!(await verifySignature(serverPublicKeyBytes, signed, decoded.signature))) {
    throw new ProtocolError('bad_token_signature');
  }
  if (BigInt(now) >= claims.expires_at + BigInt(leeway)) throw new ProtocolError('token_expired');
  if (claims.issued_at > BigInt(now) + BigInt(leeway)) throw new ProtocolError('token_not_yet_valid');
}

// ---------------------------------------------------------------- answers

// What each answer carries besides token and signature (§6.3–6.5, §12.1,
// §13.1), and which of them append a number to what they sign (§14).
const SHAPES = {
  register: { account: true, publicKey: true, label: true, number: true },
  login: { account: true, publicKey: false, label: false, number: true },
  deny: { account: false, publicKey: true, label: false, number: false },
  enroll: { account: true, publicKey: true, label: true, number: true },
  rekey: { account: true, publicKey: true, label: false, number: true },
};

function shapeOf(purpose) {
  const shape = Object.hasOwn(SHAPES, purpose) ? SHAPES[purpose] : null;
  if (shape === null) throw new TypeError(`unknown purpose ${purpose}`);
  return shape;
}

const isPresent = (value) => value !== undefined && value !== null;

/**
 * The number a person typed (§14): ASCII digits with white space (§2.1)
 * around them forgiven, 10 to 99. Else throws 'invalid_number'.
 * @param {string} text
 * @returns {number}
 */
export function readNumber(text) {
  const digits = trimWhiteSpace(String(text));
  if (!/^[0-9]+$/.test(digits)) throw new ProtocolError('invalid_number');
  return checkNumber(Number(digits));
}

/** Throws 'invalid_number' unless `number` is an integer from 10 to 99 (§14). */
function checkNumber(number) {
  if (!Number.isInteger(number) || number < 10 || number > 99) throw new ProtocolError('invalid_number');
  return number;
}

/**
 * The bytes an answer signs (§4), with `‖ u8(number)` at the end when a
 * number is given (§14; never for deny). Fields a purpose does not sign are
 * ignored: login signs no key, deny no account.
 * @param {'register'|'login'|'deny'|'enroll'|'rekey'} purpose
 * @param {{token: string, origin: string, serviceIdHex: string, account?: string,
 *          publicKey?: Uint8Array, number?: number}} fields
 *        token is the token text alone; publicKey is the key the answer
 *        names (register, deny, enroll: the signing key; rekey: the new key)
 * @returns {Uint8Array}
 */
export function signedBytes(purpose, { token, origin, serviceIdHex, account, publicKey, number }) {
  const shape = shapeOf(purpose);
  if (isPresent(number) && !shape.number) throw new TypeError(`a ${purpose} carries no number`);
  const parts = [tagged(TAGS[purpose]), str16(utf8(token)), str8(utf8(origin)), hexToBytes(serviceIdHex)];
  if (shape.account) parts.push(str8(utf8(account)));
  if (shape.publicKey) parts.push(publicKey);
  if (isPresent(number)) parts.push([number]);
  return concat(...parts);
}

/**
 * Signs an answer to a verified token and returns the JSON request body,
 * with the members §6.3–6.5, §12.1 and §13.1 name (and `number`, §14).
 * Keys are CryptoKeyPairs or {privateKey, publicKeyBytes}:
 * - register, login, deny: `key` is the account key (for deny, a key made
 *   for this answer when there is none);
 * - enroll: `key` is the new key that joins the account;
 * - rekey: `key` is the current key, `newKey` the one that replaces it.
 * The account name, label and number are checked first ('invalid_account_name',
 * 'invalid_key_label', 'invalid_number'), so nothing invalid is signed.
 * @param {'register'|'login'|'deny'|'enroll'|'rekey'} purpose
 * @param {DecodedToken} decoded a token that passed verifyToken
 * @param {{account?: string, key: object, newKey?: object, number?: number, label?: string}} options
 * @returns {Promise<object>}
 */
export async function signAnswer(purpose, decoded, { account, key, newKey, number, label }) {
  const shape = shapeOf(purpose);
  if (shape.account) checkAccountName(account);
  if (isPresent(label)) {
    if (!shape.label) throw new TypeError(`a ${purpose} carries no label`);
    checkKeyLabel(label);
  }
  if (isPresent(number)) {
    if (!shape.number) throw new TypeError(`a ${purpose} carries no number`);
    checkNumber(number);
  }
  if (purpose === 'rekey' && !newKey) throw new TypeError('a rekey needs newKey');
  const namedKey = purpose === 'rekey' ? newKey : key;
  const publicKey = shape.publicKey ? await publicKeyBytesOf(namedKey) : undefined;
  const message = signedBytes(purpose, { ...tokenFields(decoded), account, publicKey, number });
  const request = { token: decoded.text };
  if (shape.account) request.account = account;
  if (shape.publicKey) request.public_key = b64urlEncode(publicKey);
  request.signature = b64urlEncode(await sign(key.privateKey, message));
  if (purpose === 'rekey') request.new_signature = b64urlEncode(await sign(newKey.privateKey, message));
  if (isPresent(label)) request.label = label;
  if (isPresent(number)) request.number = number;
  return request;
}

function tokenFields(decoded) {
  return { token: decoded.text, origin: decoded.claims.origin, serviceIdHex: decoded.claims.service_id };
}

/**
 * Checks an answer as the server does once its token passed (§6.6): the
 * body's shape ('invalid_body'), then its own fields in the order the phone
 * spec makes precise: account, public key, label, number, then the
 * signature(s). Throws ProtocolError with the first failure's code. The
 * token itself must already have been decoded (from request.token) and
 * verified; `accountPublicKeyBytes` is the account's key, which signs a
 * login and the `signature` of a rekey.
 * @param {'register'|'login'|'deny'|'enroll'|'rekey'} purpose
 * @param {object} request the JSON body
 * @param {{tokenDecoded: DecodedToken, accountPublicKeyBytes?: Uint8Array}} context
 * @returns {Promise<void>}
 */
export async function verifyAnswer(purpose, request, { tokenDecoded, accountPublicKeyBytes }) {
  const shape = shapeOf(purpose);
  checkBody(purpose, shape, request);
  if (shape.account) checkAccountName(request.account);
  const publicKey = shape.publicKey ? readPublicKey(request.public_key) : undefined;
  if (isPresent(request.label)) checkKeyLabel(request.label);
  if (isPresent(request.number)) checkNumber(request.number);
  const message = signedBytes(purpose, {
    ...tokenFields(tokenDecoded), account: request.account, publicKey, number: request.number,
  });
  const signer = purpose === 'login' || purpose === 'rekey' ? checkPublicKey(accountPublicKeyBytes) : publicKey;
  await checkSignature(signer, message, request.signature);
  if (purpose === 'rekey') await checkSignature(publicKey, message, request.new_signature);
}

/**
 * The body's shape, which the server checks before anything else (§6.6):
 * only the members of this purpose, strings where strings belong, and a
 * number that is a u32, as the server's JSON types take them. Else
 * 'invalid_body'. A null optional member counts as absent, as there.
 */
function checkBody(purpose, shape, request) {
  const required = ['token', 'signature'];
  if (shape.account) required.push('account');
  if (shape.publicKey) required.push('public_key');
  if (purpose === 'rekey') required.push('new_signature');
  const optional = [];
  if (shape.label) optional.push('label');
  if (shape.number) optional.push('number');
  const isU32 = (n) => Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
  const fits =
    typeof request === 'object' && request !== null && !Array.isArray(request) &&
    Object.keys(request).every((member) => required.includes(member) || optional.includes(member)) &&
    required.every((member) => typeof request[member] === 'string') &&
    (!isPresent(request.label) || typeof request.label === 'string') &&
    (!isPresent(request.number) || isU32(request.number));
  if (!fits) throw new ProtocolError('invalid_body');
}

function readPublicKey(text) {
  let bytes;
  try {
    bytes = b64urlDecode(text);
  } catch {
    throw new ProtocolError('invalid_public_key');
  }
  return checkPublicKey(bytes);
}

async function checkSignature(publicKey, message, text) {
  let signature;
  try {
    signature = b64urlDecode(text);
  } catch {
    throw new ProtocolError('invalid_signature_encoding');
  }
  if (signature.length !== SIGNATURE_LENGTH) throw new ProtocolError('invalid_signature_encoding');
  if (!(await verifySignature(publicKey, message, signature))) throw new ProtocolError('bad_signature');
}

// ---------------------------------------------------------------- confirmation

/**
 * The six-digit code that confirms a new key (§11), with leading zeros and
 * no space; people are shown it as "546 991".
 * @param {Uint8Array} challengeIdBytes the token's 16-byte challenge id
 * @param {Uint8Array} publicKeyBytes the registered key
 * @returns {Promise<string>}
 */
export async function confirmationCode(challengeIdBytes, publicKeyBytes) {
  const digest = await sha256(tagged('sesame/1/confirm'), challengeIdBytes, publicKeyBytes);
  const head = new DataView(digest.buffer).getUint32(0);
  return String(head % 1_000_000).padStart(6, '0');
}

/** The most entries of `new_keys` an authenticator reads (§6.4). */
export const MAX_NEW_KEYS = 16;

/**
 * The keys that joined the account since this authenticator last signed in
 * (§6.4), from a login response, read leniently because the sign-in has
 * happened either way: an entry that is not an object, lacks `kind` or
 * `added_at`, or has a member of the wrong type (`added_at` must be an
 * integer from 0 to 2^53 − 1) is skipped, a `new_keys` that is not a list
 * reads as none, and entries past the first 16 read are ignored. Values are
 * as sent; what may be shown of them is the caller's (§6.4).
 * @param {object} outcome the parsed response body
 * @returns {{kind: string, label: string, added_at: number, added_from: string}[]}
 */
export function readNewKeys(outcome) {
  const list = outcome !== null && typeof outcome === 'object' && Array.isArray(outcome.new_keys)
    ? outcome.new_keys : [];
  // An optional text member: '' when absent, null (unreadable) when not text.
  const text = (value) => (value === undefined ? '' : typeof value === 'string' ? value : null);
  const read = [];
  for (const entry of list) {
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) continue;
    const { kind, added_at: addedAt } = entry;
    const label = text(entry.label);
    const addedFrom = text(entry.added_from);
    // Up to 2^53 − 1 (§6.4), which a JavaScript number holds exactly.
    if (typeof kind !== 'string' || !Number.isSafeInteger(addedAt) || addedAt < 0) continue;
    if (label === null || addedFrom === null) continue;
    read.push({ kind, label, added_at: addedAt, added_from: addedFrom });
    if (read.length === MAX_NEW_KEYS) break;
  }
  return read;
}

/** An IPv4 or IPv6 address, and nothing that merely looks like one. */
export function isIpAddress(text) {
  const octet = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
  if (new RegExp(`^${octet}(?:\\.${octet}){3}$`).test(text)) return true;
  if (!text.includes(':') || !/^[0-9A-Fa-f:.]+$/.test(text)) return false;
  try {
    return new URL(`http://[${text}]/`).hostname !== '';
  } catch {
    return false;
  }
}

/**
 * The sentence §6.4 asks for about a key that joined `account` since this
 * authenticator last signed in, as text and the account page it links to:
 * the name only when it is a valid key label, the address only when it is
 * one. `formatTime` shows Unix seconds in the reader's own way.
 */
export function newKeyNotice(account, key, accountPage, formatTime) {
  const what = key.kind === 'passkey' ? 'passkey' : 'authenticator';
  let name = '';
  try {
    name = key.label ? ` "${checkKeyLabel(key.label)}"` : '';
  } catch {
    // Not a label a server should have stored: say nothing of a name.
  }
  const from = isIpAddress(key.added_from) ? ` from ${key.added_from}` : '';
  return {
    text: `A new ${what}${name} was added to ${account} on ${formatTime(key.added_at)}${from}. `
      + 'If that was not you, remove it on ',
    href: accountPage,
  };
}
