// Strict Ed25519 (docs/PROTOCOL.md §2.3, §2.4) on top of WebCrypto.
//
// WebCrypto does the verification equation and all signing; it does not
// promise to refuse non-canonical or small-order keys, nor small-order R.
// So those checks are made here first, with BigInt arithmetic on public data
// only (nothing here touches a secret, so its timing does not matter).

import { ProtocolError } from './protocol-error.js';

const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const D = mod(-121665n * inverse(121666n));
const SQRT_M1 = power(2n, (P - 1n) / 4n);
const ALGORITHM = { name: 'Ed25519' };

function mod(a) {
  const r = a % P;
  return r < 0n ? r + P : r;
}

function power(base, exponent) {
  let result = 1n;
  let b = mod(base);
  for (let e = exponent; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
  }
  return result;
}

function inverse(a) {
  return power(a, P - 2n);
}

function littleEndian(bytes) {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

/**
 * RFC 8032 §5.1.3 decoding with both of its failure cases (§2.3): the point
 * {x, y}, or null when the 32 bytes are not the encoding of a point.
 */
function decodePoint(bytes) {
  const n = littleEndian(bytes);
  const sign = n >> 255n;
  const y = n & (2n ** 255n - 1n);
  if (y >= P) return null;
  const u = mod(y * y - 1n);
  const v = mod(D * y * y + 1n);
  // x = sqrt(u / v) = u v^3 (u v^7)^((p - 5) / 8), corrected by sqrt(-1).
  let x = mod(u * power(v, 3n) * power(u * power(v, 7n), (P - 5n) / 8n));
  const vxx = mod(v * x * x);
  if (vxx === mod(-u)) x = mod(x * SQRT_M1);
  else if (vxx !== u) return null;
  if (x === 0n && sign === 1n) return null;
  if ((x & 1n) !== sign) x = P - x;
  return { x, y };
}

// The complete twisted Edwards addition law (a = -1); d is not a square, so
// the denominators never vanish.
function add(p, q) {
  const t = mod(D * p.x * q.x * p.y * q.y);
  return {
    x: mod((p.x * q.y + p.y * q.x) * inverse(1n + t)),
    y: mod((p.y * q.y + p.x * q.x) * inverse(1n - t)),
  };
}

/** A point of small order is one that [8]P sends to the neutral element (0, 1). */
function isSmallOrder(point) {
  let q = point;
  for (let i = 0; i < 3; i++) q = add(q, q);
  return q.x === 0n && q.y === 1n;
}

/**
 * Returns `bytes` if they are a usable Ed25519 public key (§2.3), else throws
 * ProtocolError 'invalid_public_key' (not 32 bytes, or not a point) or
 * 'weak_public_key' (a point of small order).
 * @param {Uint8Array} bytes
 * @returns {Uint8Array}
 */
export function checkPublicKey(bytes) {
  const point = bytes instanceof Uint8Array && bytes.length === 32 ? decodePoint(bytes) : null;
  if (point === null) throw new ProtocolError('invalid_public_key');
  if (isSmallOrder(point)) throw new ProtocolError('weak_public_key');
  return bytes;
}

/**
 * Verifies `signature` over `message` under `publicKey` as §2.4 says (the
 * checks of ed25519-dalek's verify_strict). The key must already have passed
 * checkPublicKey. Resolves to false for any signature that does not verify.
 * @param {Uint8Array} publicKey
 * @param {Uint8Array} message
 * @param {Uint8Array} signature
 * @returns {Promise<boolean>}
 */
export async function verifySignature(publicKey, message, signature) {
  if (signature.length !== 64 || littleEndian(signature.subarray(32)) >= L) return false;
  const r = decodePoint(signature.subarray(0, 32));
  if (r === null || isSmallOrder(r)) return false;
  const key = await crypto.subtle.importKey('raw', publicKey, ALGORITHM, false, ['verify']);
  return crypto.subtle.verify(ALGORITHM, key, signature, message);
}

/**
 * Signs `message` with a WebCrypto Ed25519 private key.
 * @param {CryptoKey} privateKey
 * @param {Uint8Array} message
 * @returns {Promise<Uint8Array>} 64 bytes
 */
export async function sign(privateKey, message) {
  return new Uint8Array(await crypto.subtle.sign(ALGORITHM, privateKey, message));
}

/**
 * The 32 raw bytes of a key given as a CryptoKeyPair ({privateKey, publicKey})
 * or as {privateKey, publicKeyBytes}.
 * @returns {Promise<Uint8Array>}
 */
export async function publicKeyBytesOf(key) {
  if (key.publicKeyBytes instanceof Uint8Array) return key.publicKeyBytes;
  return new Uint8Array(await crypto.subtle.exportKey('raw', key.publicKey));
}
