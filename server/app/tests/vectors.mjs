// Holds server/app/protocol.js to the test vectors of shared/vectors/ and
// (in units.mjs) to rules of docs/PROTOCOL.md that the vectors do not cover.
//
//   node server/app/tests/vectors.mjs
//
// Prints one line per failure and ends with "N passed, M failed"; exits
// non-zero when anything failed.

import { readFile, readdir } from 'node:fs/promises';
import { timingSafeEqual } from 'node:crypto';
import { deepStrictEqual, strictEqual } from 'node:assert/strict';

import * as P from '../protocol.js';
import { unitChecks } from './units.mjs';

const VECTORS = new URL('../../../shared/vectors/', import.meta.url);
let passed = 0;
let failed = 0;

// ---------------------------------------------------------------- harness

async function check(name, body) {
  try {
    await body();
    passed++;
  } catch (error) {
    failed++;
    console.log(`FAIL ${name}: ${error?.message ?? error}`);
  }
}

const describe = (error) => (error instanceof P.ProtocolError ? error.code : `${error?.name}: ${error?.message}`);

/** Passes when `body` throws a ProtocolError with `code`. */
function expectCode(name, code, body) {
  return check(name, async () => {
    try {
      await body();
    } catch (error) {
      if (error instanceof P.ProtocolError && error.code === code) return;
      throw new Error(`expected ${code}, got ${describe(error)}`);
    }
    throw new Error(`expected ${code}, got success`);
  });
}

function expectKeys(where, object, allowed) {
  const unknown = Object.keys(object).filter((key) => !allowed.includes(key));
  if (unknown.length > 0) {
    throw new Error(`${where} has members this test does not know: ${unknown.join(', ')}; cover them`);
  }
}

// JSON.parse would round the u64 times near 2^64 − 1 (§9), so integers that
// a double cannot hold are turned into marked strings, outside of string
// literals only, and revived as BigInt.
const BIG = '\u0000bigint:';

function parseJson(text) {
  let out = '';
  for (let i = 0; i < text.length; ) {
    if (text[i] === '"') {
      const end = endOfString(text, i);
      out += text.slice(i, end);
      i = end;
      continue;
    }
    const number = /^-?\d+(?![.eE\d])/.exec(text.slice(i, i + 32));
    if (number && !Number.isSafeInteger(Number(number[0]))) {
      out += JSON.stringify(BIG + number[0]);
      i += number[0].length;
    } else {
      out += text[i++];
    }
  }
  return JSON.parse(out, (_, value) =>
    typeof value === 'string' && value.startsWith(BIG) ? BigInt(value.slice(BIG.length)) : value,
  );
}

function endOfString(text, start) {
  let i = start + 1;
  while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
  return i + 1;
}

const readVectors = async (name) => parseJson(await readFile(new URL(name, VECTORS), 'utf8'));

// ---------------------------------------------------------------- server-side helpers

const encoder = new TextEncoder();

/** An Ed25519 key from its 32-byte seed, as PKCS#8, with its public key. */
async function importSeed(seedHex) {
  const pkcs8 = P.hexToBytes(`302e020100300506032b657004220420${seedHex}`);
  const privateKey = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, true, ['sign']);
  const { x } = await crypto.subtle.exportKey('jwk', privateKey);
  return { privateKey, publicKeyBytes: P.b64urlDecode(x) };
}

/**
 * §3.3 / §3.4 step 13, which only the server can do: the code is genuine
 * ('bad_code'), was shown no later than now and before expiry ('bad_code'),
 * and at most `window` seconds ago ('stale_code'). Test-only: the app never
 * holds a code secret.
 */
async function checkCode(decoded, secret, now, window) {
  const { claims, step } = decoded;
  const key = await crypto.subtle.importKey('raw', secret, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const stepBytes = new Uint8Array(4);
  new DataView(stepBytes.buffer).setUint32(0, step);
  const message = new Uint8Array([
    ...encoder.encode('sesame/1/fresh\0'), ...P.hexToBytes(claims.challenge_id), ...stepBytes,
  ]);
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, message)).subarray(0, 10);
  if (!timingSafeEqual(mac, decoded.code)) throw new P.ProtocolError('bad_code');
  const shownAt = claims.issued_at + BigInt(step) * BigInt(claims.rotation);
  if (shownAt > now || shownAt >= claims.expires_at) throw new P.ProtocolError('bad_code');
  if (now - shownAt > window) throw new P.ProtocolError('stale_code');
}

// ---------------------------------------------------------------- protocol.json

const TOP_LEVEL = [
  'description', 'now', 'code_window', 'server', 'account', 'new_account', 'token',
  'responses', 'invalid_tokens', 'invalid_responses', 'inputs', 'outcomes',
];
const REQUEST_MEMBERS = ['token', 'account', 'public_key', 'signature', 'new_signature', 'label', 'number'];

async function protocolVectors() {
  const v = await readVectors('protocol.json');
  await check('protocol.json: known sections', () => expectKeys('protocol.json', v, TOP_LEVEL));
  const now = BigInt(v.now);
  const window = BigInt(v.code_window);
  const serverKey = P.b64urlDecode(v.server.public_key_b64);
  const secret = P.hexToBytes(v.token.code_secret);
  const keys = {
    server: await importSeed(v.server.seed),
    account: await importSeed(v.account.seed),
    new_account: await importSeed(v.new_account.seed),
  };

  // The authenticator's checks (§3.5, no leeway), and the server's, which
  // add the code. Vector tokens are token texts, read as the server reads a
  // request's token; only inputs[] entries are what a person pasted.
  const asAuthenticator = async (input, at, decode = P.decodeBareToken) => {
    const decoded = decode(input);
    await P.verifyToken(decoded, serverKey, at, 0n);
    return decoded;
  };
  const asServer = async (input, at, decode = P.decodeBareToken) => {
    const decoded = await asAuthenticator(input, at, decode);
    await checkCode(decoded, secret, at, window);
    return decoded;
  };

  await check('server key', async () => {
    for (const name of ['server', 'account', 'new_account']) {
      strictEqual(P.b64urlEncode(keys[name].publicKeyBytes), v[name].public_key_b64, `${name} seed`);
    }
    strictEqual(await P.keyId(serverKey), v.server.key_id);
    P.checkPublicKey(serverKey);
  });
  await tokenVector(v, asServer);
  for (const entry of v.responses) await response(entry, v, keys, asServer);
  for (const entry of v.invalid_tokens) await invalidToken(entry, asAuthenticator, asServer);
  for (const entry of v.invalid_responses) await invalidResponse(entry, v, asServer, now);
  for (const entry of v.inputs ?? []) await input(entry, asAuthenticator, asServer);
  for (const entry of v.outcomes ?? []) {
    await check(`outcomes[${entry.name}]`, () => {
      expectKeys(`outcomes[${entry.name}]`, entry, ['name', 'description', 'body', 'new_keys']);
      deepStrictEqual(P.readNewKeys(entry.body), entry.new_keys);
    });
  }
}

async function tokenVector(v, asServer) {
  const { token } = v;
  await check('token: decodes to its claims and verifies', async () => {
    expectKeys('token', token, ['base_bytes', 'base_token', 'claims', 'code_secret', 'fresh_bytes', 'step', 'text']);
    const decoded = await asServer(token.text, BigInt(v.now));
    const { issued_at: issued, expires_at: expires } = token.claims;
    const expected = { ...token.claims, issued_at: BigInt(issued), expires_at: BigInt(expires) };
    deepStrictEqual(decoded.claims, expected);
    strictEqual(decoded.text, token.text);
    strictEqual(decoded.linkOrigin, null);
    strictEqual(decoded.step, token.step);
    strictEqual(P.bytesToHex(decoded.body) + P.bytesToHex(decoded.signature), token.base_bytes);
    strictEqual(token.step.toString(16).padStart(8, '0') + P.bytesToHex(decoded.code), token.fresh_bytes);
    strictEqual(token.text.slice(0, token.text.lastIndexOf('.')), token.base_token);
  });
}

/** Which vector key signs what, per §9: alice, and new_account for what enroll and rekey add. */
function signersOf(purpose, keys) {
  if (purpose === 'enroll') return { key: keys.new_account };
  if (purpose === 'rekey') return { key: keys.account, newKey: keys.new_account };
  return { key: keys.account };
}

async function response(entry, v, keys, asServer) {
  const { purpose, request } = entry;
  const name = `responses[${purpose}${request.number === undefined ? '' : `, number ${request.number}`}]`;
  await check(`${name}: signed bytes`, async () => {
    expectKeys(name, entry, ['purpose', 'request', 'signed_bytes', 'name', 'description']);
    expectKeys(`${name}.request`, request, REQUEST_MEMBERS);
    const decoded = await asServer(request.token, BigInt(v.now));
    const { key, newKey } = signersOf(purpose, keys);
    const bytes = P.signedBytes(purpose, {
      token: decoded.text,
      origin: decoded.claims.origin,
      serviceIdHex: decoded.claims.service_id,
      account: request.account,
      publicKey: (newKey ?? key).publicKeyBytes,
      number: request.number,
    });
    strictEqual(P.bytesToHex(bytes), entry.signed_bytes);
  });
  await check(`${name}: request reproduced`, async () => {
    const decoded = P.decodeBareToken(request.token);
    const { key, newKey } = signersOf(purpose, keys);
    const options = { account: request.account, key, newKey, label: request.label, number: request.number };
    deepStrictEqual(await P.signAnswer(purpose, decoded, options), request);
  });
  await check(`${name}: verifies`, async () => {
    const tokenDecoded = P.decodeBareToken(request.token);
    await P.verifyAnswer(purpose, request, { tokenDecoded, accountPublicKeyBytes: keys.account.publicKeyBytes });
  });
}

async function invalidToken(entry, asAuthenticator, asServer) {
  const at = BigInt(entry.now);
  const name = `invalid_tokens[${entry.name}]`;
  await check(`${name}: known members`, () =>
    expectKeys(name, entry, ['name', 'description', 'now', 'token', 'error']),
  );
  await expectCode(`${name} (server)`, entry.error, () => asServer(entry.token, at));
  if (entry.error !== 'bad_code' && entry.error !== 'stale_code') {
    await expectCode(`${name} (authenticator)`, entry.error, () => asAuthenticator(entry.token, at));
  }
}

async function invalidResponse(entry, v, asServer, now) {
  const name = `invalid_responses[${entry.name}]`;
  await check(`${name}: known members`, () => {
    expectKeys(name, entry, ['name', 'description', 'purpose', 'request', 'error']);
    expectKeys(`${name}.request`, entry.request, REQUEST_MEMBERS);
  });
  await expectCode(name, entry.error, async () => {
    const tokenDecoded = await asServer(entry.request.token, now);
    const accountPublicKeyBytes = P.b64urlDecode(v.account.public_key_b64);
    await P.verifyAnswer(entry.purpose, entry.request, { tokenDecoded, accountPublicKeyBytes });
  });
}

/**
 * The link form (§3.6): an entry with `error` must fail with it, as the
 * server would check it; one with `token` must read as that bare token and
 * verify at its `now`.
 */
async function input(entry, asAuthenticator, asServer) {
  const name = `inputs[${entry.name}]`;
  const at = BigInt(entry.now);
  await check(`${name}: known members`, () => {
    expectKeys(name, entry, ['name', 'description', 'input', 'now', 'error', 'token']);
    if ((entry.error === undefined) === (entry.token === undefined)) {
      throw new Error('needs exactly one of error, token');
    }
  });
  if (entry.error !== undefined) {
    await expectCode(name, entry.error, () => asServer(entry.input, at, P.decodeToken));
  } else {
    await check(name, async () => {
      strictEqual((await asAuthenticator(entry.input, at, P.decodeToken)).text, entry.token);
    });
  }
}

// ---------------------------------------------------------------- rfc8032.json, confirmation.json

async function rfc8032Vectors() {
  const v = await readVectors('rfc8032.json');
  await check('rfc8032.json: known sections', () => expectKeys('rfc8032.json', v, ['description', 'vectors']));
  for (const vector of v.vectors) {
    const publicKey = P.hexToBytes(vector.public_key);
    const message = P.hexToBytes(vector.message);
    const signature = P.hexToBytes(vector.signature);
    await check(`rfc8032[${vector.name}]: verifies`, async () => {
      P.checkPublicKey(publicKey);
      strictEqual(await P.verifySignature(publicKey, message, signature), true);
      const altered = signature.slice();
      altered[0] ^= 1;
      strictEqual(await P.verifySignature(publicKey, message, altered), false);
    });
    await check(`rfc8032[${vector.name}]: signs`, async () => {
      const key = await importSeed(vector.secret_key);
      strictEqual(P.bytesToHex(key.publicKeyBytes), vector.public_key);
      const made = new Uint8Array(await crypto.subtle.sign('Ed25519', key.privateKey, message));
      strictEqual(P.bytesToHex(made), vector.signature);
    });
  }
}

async function confirmationVectors() {
  const v = await readVectors('confirmation.json');
  await check('confirmation.json: known sections', () => expectKeys('confirmation.json', v, ['description', 'cases']));
  for (const item of v.cases) {
    await check(`confirmation[${item.challenge_id}]`, async () => {
      const challengeId = P.hexToBytes(item.challenge_id);
      const publicKey = P.b64urlDecode(item.public_key_b64);
      const code = await P.confirmationCode(challengeId, publicKey);
      strictEqual(code, item.code);
      strictEqual(`${code.slice(0, 3)} ${code.slice(3)}`, item.shown);
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new Uint8Array([
        ...encoder.encode('sesame/1/confirm\0'), ...challengeId, ...publicKey,
      ])));
      strictEqual(P.bytesToHex(digest.subarray(0, 4)), item.digest_prefix);
    });
  }
}

async function everyVectorFileIsChecked() {
  const known = ['protocol.json', 'rfc8032.json', 'confirmation.json'];
  const files = (await readdir(VECTORS)).filter((file) => file.endsWith('.json'));
  await check('every vector file is checked', () => {
    const unknown = files.filter((file) => !known.includes(file));
    if (unknown.length > 0) throw new Error(`vector files this test does not read: ${unknown.join(', ')}`);
  });
}

await everyVectorFileIsChecked();
await protocolVectors();
await rfc8032Vectors();
await confirmationVectors();
await unitChecks({ check, expectCode, readVectors, importSeed });

console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
