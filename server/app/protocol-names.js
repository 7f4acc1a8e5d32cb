// Names and origins exactly as docs/PROTOCOL.md §2.1 defines them.

import { ProtocolError } from './protocol-error.js';

const MAX_ORIGIN_BYTES = 100;
const MAX_NAME_BYTES = 64;

// Unicode White_Space, and nothing else. Not String.prototype.trim's set:
// that one leaves U+0085 and removes U+FEFF. Every member is in the BMP, so
// comparing UTF-16 code units is exact.
const WHITE_SPACE = new Set([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680,
  0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
  0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
]);

// Cc, Bidi_Control, and the zero-width space, non-joiner and joiner.
const FORBIDDEN_IN_NAME = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u200b-\u200d]/u;
// In a /u pattern a surrogate range matches only unpaired surrogates, which
// have no UTF-8 form.
const LONE_SURROGATE = /[\ud800-\udfff]/u;

const encoder = new TextEncoder();
// fatal: invalid UTF-8 is an error, not U+FFFD. ignoreBOM: a leading U+FEFF
// is a character of the name, not a byte order mark to drop.
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** UTF-8 encoding of `text`. */
export const utf8 = (text) => encoder.encode(text);

/** Decodes strict UTF-8, or returns null. */
export function fromUtf8(bytes) {
  try {
    return decoder.decode(bytes);
  } catch {
    return null;
  }
}

/** Removes white space (§2.1) from both ends of `text`, and nothing else. */
export function trimWhiteSpace(text) {
  let start = 0;
  let end = text.length;
  while (start < end && WHITE_SPACE.has(text.charCodeAt(start))) start++;
  while (end > start && WHITE_SPACE.has(text.charCodeAt(end - 1))) end--;
  return text.slice(start, end);
}

/**
 * `text` without any white space (§2.1), wherever it stands (§3.4 step 1).
 * @param {string} text
 * @returns {string}
 */
export function removeWhiteSpace(text) {
  let kept = '';
  for (let i = 0; i < text.length; i++) if (!WHITE_SPACE.has(text.charCodeAt(i))) kept += text[i];
  return kept;
}

/** True when `text` is a service, account or label name of §2.1. */
function isValidName(text) {
  if (typeof text !== 'string' || LONE_SURROGATE.test(text)) return false;
  const length = utf8(text).length;
  return length >= 1 && length <= MAX_NAME_BYTES && trimWhiteSpace(text) === text && !FORBIDDEN_IN_NAME.test(text);
}

function checkName(text, code) {
  if (!isValidName(text)) throw new ProtocolError(code);
  return text;
}

/**
 * Returns `name` if it is a valid account name (§2.1), else throws
 * ProtocolError 'invalid_account_name'. Nothing is trimmed.
 * @param {string} name
 * @returns {string}
 */
export const checkAccountName = (name) => checkName(name, 'invalid_account_name');

/**
 * Returns `label` if it is a valid key label (§4.1), else throws
 * ProtocolError 'invalid_key_label'.
 * @param {string} label
 * @returns {string}
 */
export const checkKeyLabel = (label) => checkName(label, 'invalid_key_label');

/** Throws 'invalid_service_name' unless `name` is a valid service name. */
export const checkServiceName = (name) => checkName(name, 'invalid_service_name');

/**
 * Returns `text` if it is an origin of §2.1, else throws 'invalid_origin'.
 * @param {string} text
 * @returns {string}
 */
export function checkOrigin(text) {
  if (!isOrigin(text)) throw new ProtocolError('invalid_origin');
  return text;
}

/** True when `text` is exactly an origin of the §2.1 grammar. */
export function isOrigin(text) {
  if (typeof text !== 'string' || utf8(text).length > MAX_ORIGIN_BYTES) return false;
  const match = /^https?:\/\/(.*)$/s.exec(text);
  const parts = match && splitHostPort(match[1]);
  return parts !== null && isHost(parts.host) && (parts.port === null || isPort(parts.port));
}

function splitHostPort(rest) {
  if (rest.startsWith('[')) {
    const end = rest.indexOf(']');
    if (end < 0) return null;
    const after = rest.slice(end + 1);
    if (after === '') return { host: rest.slice(0, end + 1), port: null };
    return after.startsWith(':') ? { host: rest.slice(0, end + 1), port: after.slice(1) } : null;
  }
  const colon = rest.indexOf(':');
  return colon < 0 ? { host: rest, port: null } : { host: rest.slice(0, colon), port: rest.slice(colon + 1) };
}

const LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
const DEC_OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9][0-9]|[0-9])';
const IPV4 = new RegExp(`^${DEC_OCTET}(?:\\.${DEC_OCTET}){3}$`);

function isHost(host) {
  if (host.startsWith('[') && host.endsWith(']')) return isCanonicalIpv6(host.slice(1, -1));
  const labels = host.split('.');
  if (!labels.every((label) => LABEL.test(label))) return false;
  // Browsers read a host whose last label is a number as an IPv4 address
  // and rewrite it ("127.1" is 127.0.0.1): only the dotted quad they write
  // back is an origin.
  return !/^[0-9]+$/.test(labels[labels.length - 1]) || IPV4.test(host);
}

function isPort(port) {
  return /^[1-9][0-9]{0,4}$/.test(port) && Number(port) <= 65535;
}

// RFC 5952 §4: the one text of an address. Parsed leniently, then compared
// with the canonical text, so every other spelling of an address fails.
function isCanonicalIpv6(text) {
  const groups = parseIpv6(text);
  return groups !== null && formatIpv6(groups) === text;
}

function parseIpv6(text) {
  if (!/^[0-9a-f:]+$/.test(text)) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groupsOf = (part) => (part === '' ? [] : part.split(':'));
  const head = groupsOf(halves[0]);
  const tail = halves.length === 2 ? groupsOf(halves[1]) : [];
  if (![...head, ...tail].every((g) => g.length >= 1 && g.length <= 4)) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  return [...head, ...Array(missing).fill('0'), ...tail].map((g) => parseInt(g, 16));
}

function formatIpv6(groups) {
  let best = { start: 0, length: 0 };
  for (let i = 0; i < groups.length; ) {
    let j = i;
    while (j < groups.length && groups[j] === 0) j++;
    if (j - i > best.length) best = { start: i, length: j - i };
    i = Math.max(j, i + 1);
  }
  const hex = (part) => part.map((g) => g.toString(16)).join(':');
  if (best.length < 2) return hex(groups);
  return `${hex(groups.slice(0, best.start))}::${hex(groups.slice(best.start + best.length))}`;
}
