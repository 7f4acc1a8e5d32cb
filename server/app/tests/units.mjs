// Rules of docs/PROTOCOL.md and of the phone draft (links §3.6, numbers
// §14, the order of an answer's checks) that shared/vectors/ does not cover.
// Run through vectors.mjs, which owns the counting.

import { readFile, readdir } from 'node:fs/promises';
import { strictEqual, deepStrictEqual, throws, rejects } from 'node:assert/strict';

import * as P from '../protocol.js';

const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const WHITE_SPACE = [
  '\u0009', '\u000a', '\u000b', '\u000c', '\u000d', '\u0020', '\u0085', '\u00a0', '\u1680', '\u2000', '\u2001',
  '\u2002', '\u2003', '\u2004', '\u2005', '\u2006', '\u2007', '\u2008', '\u2009', '\u200a', '\u2028', '\u2029',
  '\u202f', '\u205f', '\u3000',
];
// Characters that look like white space, or that JavaScript's trim removes,
// but that are not Unicode White_Space.
const NOT_WHITE_SPACE = ['\u001c', '\u001d', '\u001e', '\u001f', '\u180e', '\u200b', '\u2060', '\ufeff'];

export async function unitChecks({ check, expectCode, readVectors, importSeed }) {
  const v = await readVectors('protocol.json');
  const ctx = {
    check,
    expectCode,
    v,
    token: v.token.text,
    origin: v.token.claims.origin,
    serverKey: P.b64urlDecode(v.server.public_key_b64),
    alice: await importSeed(v.account.seed),
    other: await importSeed(v.new_account.seed),
    server: await importSeed(v.server.seed),
  };
  await links(ctx);
  await whiteSpace(ctx);
  await base64url(ctx);
  await names(ctx);
  await origins(ctx);
  await publicKeys(ctx);
  await signatures(ctx);
  await laxWebCrypto(ctx);
  await mintedTokens(ctx);
  await times(ctx);
  await numbers(ctx);
  await orderOfAnswerChecks(ctx);
  await browserSafeSource(ctx);
  await newKeys(ctx);
  await check('confirmation: leading zeros are kept', async () => {
    // Computed apart from this code, with Python's hashlib.
    const challengeId = P.hexToBytes('17171717171717171717171717171700');
    strictEqual(await P.confirmationCode(challengeId, ctx.alice.publicKeyBytes), '001219');
  });
}

async function links({ check, expectCode, v, token, origin }) {
  const link = `${origin}/app#${token}`;
  await expectCode('link: a request\'s token member is never a link', 'not_a_token', () => P.decodeBareToken(link));
  await check('link: reads as its bare token', () => {
    deepStrictEqual(P.readInput(` ${link}\u3000`), { token, linkOrigin: origin });
    const decoded = P.decodeToken(`\u0085${link}\n`);
    strictEqual(decoded.text, token);
    strictEqual(decoded.linkOrigin, origin);
  });
  await check('link: white space inside it, as from a wrapped line, is removed', () => {
    const wrapped = `${link.slice(0, 40)}\r\n  ${link.slice(40, 200)}\u00a0${link.slice(200)}`;
    strictEqual(P.decodeToken(wrapped).text, token);
    strictEqual(P.decodeBareToken(`${token.slice(0, 70)}\n    ${token.slice(70)}`).text, token);
  });
  const badLinks = {
    'no #': `${origin}/app${token}`,
    'query': `${origin}/app?x=1#${token}`,
    'trailing slash': `${origin}/app/#${token}`,
    'no path': `${origin}#${token}`,
    'root path': `${origin}/#${token}`,
    'other path': `${origin}/apps#${token}`,
    'upper case host': `https://Login.example.com/app#${token}`,
    'upper case path': `${origin}/APP#${token}`,
    'user info': `https://me@login.example.com/app#${token}`,
    'empty host': `https:///app#${token}`,
    'port 0': `https://login.example.com:0/app#${token}`,
  };
  for (const [what, text] of Object.entries(badLinks)) {
    await expectCode(`link: ${what} is bad_link`, 'bad_link', () => P.decodeToken(text));
  }
  const mismatches = {
    'another host': `https://evil.example/app#${token}`,
    'the same host over http': `http://login.example.com/app#${token}`,
    'an explicit default port': `https://login.example.com:443/app#${token}`,
    'a loopback host': `http://[::1]/app#${token}`,
  };
  for (const [what, text] of Object.entries(mismatches)) {
    await expectCode(`link: ${what} is link_origin_mismatch`, 'link_origin_mismatch', () => P.decodeToken(text));
  }
  const others = [
    ['an upper-case scheme is not a link', 'not_a_token', `HTTPS://login.example.com/app#${token}`],
    ['a fragment that is not a token', 'not_a_token', `${origin}/app#hello`],
    ['a zero-width space is not white space', 'not_a_token', `${origin}/app#\u200b${token}`],
    ['an empty fragment', 'not_a_token', `${origin}/app#`],
    ['a second # is in the token', 'bad_encoding', `${link}#x`],
    ['a link above 617 bytes', 'token_too_long', `${origin}/app#sesame1.${'A'.repeat(600)}`],
    ['the link length comes before its #', 'token_too_long', `${origin}/app${'x'.repeat(600)}`],
    ['a short link with a token above 512 bytes', 'token_too_long', `http://a/app#sesame1.${'A'.repeat(510)}`],
    ['a token fault comes before the link check', 'invalid_origin',
      `${origin}/app#${v.invalid_tokens.find((t) => t.name === 'uppercase_origin').token}`],
  ];
  for (const [what, code, text] of others) {
    await expectCode(`link: ${what}`, code, () => P.decodeToken(text));
  }
  await check('link: at most 617 bytes is read', () => {
    const longest = `http://${'a'.repeat(93)}/app#sesame1.`;
    const text = longest + 'A'.repeat(617 - longest.length);
    strictEqual(P.readInput(text).token.length, 512);
  });
}

async function whiteSpace({ check, expectCode, token }) {
  await check('white space: every White_Space character is trimmed', () => {
    for (const c of WHITE_SPACE) {
      strictEqual(P.decodeToken(`${c}${c}${token}${c}`).text, token, `U+${c.codePointAt(0).toString(16)}`);
    }
  });
  for (const c of NOT_WHITE_SPACE) {
    const hex = c.codePointAt(0).toString(16).padStart(4, '0');
    await expectCode(`white space: U+${hex} is not trimmed`, 'not_a_token', () => P.decodeToken(c + token));
    await expectCode(`white space: U+${hex} at the end is kept`, 'bad_encoding', () => P.decodeToken(token + c));
  }
}

async function base64url({ check, expectCode }) {
  await check('base64url: round trips', () => {
    for (let n = 0; n < 70; n++) {
      const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 151 + n * 7) & 0xff);
      const text = P.b64urlEncode(bytes);
      strictEqual(text.includes('='), false);
      deepStrictEqual(P.b64urlDecode(text), bytes);
      strictEqual(text, Buffer.from(bytes).toString('base64url'));
    }
  });
  for (const text of ['AA==', 'AA=', 'A', 'AAAAA', 'AB', 'AAB', '+/8', 'A A', 'AA\n', 'ÀA', '😀']) {
    await expectCode(`base64url: refuses ${JSON.stringify(text)}`, 'bad_encoding', () => P.b64urlDecode(text));
  }
}

async function names({ check, expectCode }) {
  const good = [
    'alice', '<script>alert(1)</script>', "Zoë O'Brien; DROP TABLE account", 'a\u00a0b', 'x'.repeat(64),
    'é'.repeat(32), '😀', '\ufeffalice', 'a b',
  ];
  await check('names: valid account names and labels', () => {
    for (const name of good) {
      strictEqual(P.checkAccountName(name), name);
      strictEqual(P.checkKeyLabel(name), name);
    }
  });
  const bad = [
    '', ' alice', 'alice ', '\u3000alice', 'alice\u00a0', 'alice\u0085', '\u2028a', 'a\nb', 'a\u0000b',
    'a\u007fb', 'a\u0080b', 'a\u009fb', 'a\u061cb', 'a\u200eb', 'a\u200fb', 'a\u202ab', 'bidi\u202etxt',
    'a\u2066b', 'a\u2069b', 'zero\u200bwidth', 'a\u200cb', 'a\u200db', 'x'.repeat(65), `${'é'.repeat(32)}x`,
    'a\ud800b', 'a\udc00', 42, null,
  ];
  for (const name of bad) {
    const shown = JSON.stringify(name);
    await expectCode(`names: account ${shown}`, 'invalid_account_name', () => P.checkAccountName(name));
    await expectCode(`names: label ${shown}`, 'invalid_key_label', () => P.checkKeyLabel(name));
  }
}

async function origins({ check, expectCode }) {
  const good = [
    'https://example.com', 'http://127.0.0.1:8080', 'https://a-b.example:443', 'http://[::1]:9000',
    'http://localhost', 'http://1a.b-c.d9', 'http://a:65535', 'http://[::ffff:7f00:1]', 'http://[1:0:0:1::1]',
    'http://[1::1:0:0:1:1]', 'http://[::1:0:0:0:1]', 'http://[1:2:3:4:5:6:7:0]', 'https://[::]:443',
    'http://255.255.255.255', 'http://0.0.0.0', `https://${'a'.repeat(92)}`,
  ];
  await check('origins: valid', () => {
    for (const origin of good) strictEqual(P.checkOrigin(origin), origin);
  });
  const bad = [
    '', 'example.com', 'ftp://example.com', 'https://Example.com', 'https://example.com/', 'https://example.com/x',
    'https://user@example.com', 'https://example.com:0', 'https://example.com:65536', 'https://example.com:',
    'https://.example.com', 'https://exa mple.com', 'https://example.com?x', 'http://[::1', 'http://[:]',
    'http://[d]', 'http://[1.2]', 'http://[1:2:3:4:5:6:7:8:9]', 'http://[::1%25eth0]', 'http://[]',
    'http://[::ffff:127.0.0.1]', 'http://[0:0:0:0:0:0:0:1]', 'http://[::01]', 'http://[1::1:0:0:0:1]',
    'http://[1:0:0:1::1:1]', 'http://[1:0::1]', 'http://[::0:1]', 'http://[1:2:3:4:5:6:7::]', 'http://[::A]',
    'http://a:+80', 'http://a:+0', 'http://a:-1', 'http://a:080', 'http://a..b', 'http://a.-b', 'http://a-.b',
    'http://127.1', 'http://127.0.0.01', 'http://a.1', 'http://256.0.0.1', 'http://1', 'HTTP://a',
    'http://a.b.', 'http://[::1]:', 'http://[::1]x', 'http://bücher.example', 'http://a\u0000',
    `https://${'a'.repeat(93)}`, 'http://[::1]:80:80', 'http://a_b',
  ];
  for (const origin of bad) {
    await expectCode(`origins: ${JSON.stringify(origin)}`, 'invalid_origin', () => P.checkOrigin(origin));
  }
}

function keyWith(y, sign = 0) {
  const bytes = new Uint8Array(32);
  let n = y | (BigInt(sign) << 255n);
  for (let i = 0; i < 32; i++, n >>= 8n) bytes[i] = Number(n & 0xffn);
  return bytes;
}

async function publicKeys({ check, expectCode, serverKey }) {
  const p = 2n ** 255n - 19n;
  await check('public keys: the vector key is usable', () => P.checkPublicKey(serverKey));
  const weak = {
    'the neutral element (0, 1)': keyWith(1n),
    '(0, -1), of order 2': keyWith(p - 1n),
    'y = 0, of order 4': keyWith(0n),
    'y = 0 with its other sign': keyWith(0n, 1),
    'a point of order 8': P.hexToBytes('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a'),
    'another point of order 8': P.hexToBytes('26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05'),
  };
  for (const [what, key] of Object.entries(weak)) {
    await expectCode(`public keys: ${what} is weak`, 'weak_public_key', () => P.checkPublicKey(key));
  }
  const invalid = {
    'y = p + 10': keyWith(p + 10n),
    'y = p': keyWith(p),
    'y = 1 with the sign bit (x = 0)': keyWith(1n, 1),
    'y = p - 1 with the sign bit (x = 0)': keyWith(p - 1n, 1),
    'y = 2, not on the curve': keyWith(2n),
    '31 bytes': new Uint8Array(31).fill(1),
    '33 bytes': new Uint8Array(33),
  };
  for (const [what, key] of Object.entries(invalid)) {
    await expectCode(`public keys: ${what} is invalid`, 'invalid_public_key', () => P.checkPublicKey(key));
  }
}

async function signatures({ check, v }) {
  const login = v.responses.find((r) => r.purpose === 'login');
  const key = P.b64urlDecode(v.account.public_key_b64);
  const message = P.hexToBytes(login.signed_bytes);
  const signature = P.b64urlDecode(login.request.signature);
  await check('signatures: the login signature verifies', async () => {
    strictEqual(await P.verifySignature(key, message, signature), true);
  });
  await check('signatures: S + L does not verify', async () => {
    let s = 0n;
    for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(signature[i]);
    const malleated = signature.slice();
    let n = s + L;
    for (let i = 32; i < 64; i++, n >>= 8n) malleated[i] = Number(n & 0xffn);
    strictEqual(await P.verifySignature(key, message, malleated), false);
  });
  await check('signatures: small-order R does not verify', async () => {
    const forged = new Uint8Array(64);
    forged.set(keyWith(1n), 0);
    strictEqual(await P.verifySignature(key, message, forged), false);
  });
}

/**
 * WebCrypto need not refuse S ≥ L or a small-order or non-canonical R
 * (Node's does). With a verify that accepts everything, the checks made
 * before it must still refuse them.
 */
async function laxWebCrypto({ check, v }) {
  const login = v.responses.find((r) => r.purpose === 'login');
  const key = P.b64urlDecode(v.account.public_key_b64);
  const message = P.hexToBytes(login.signed_bytes);
  const signature = P.b64urlDecode(login.request.signature);
  const p = 2n ** 255n - 19n;
  const withR = (r) => Uint8Array.from([...r, ...signature.subarray(32)]);
  const withS = (s) => Uint8Array.from([...signature.subarray(0, 32), ...keyWith(s)]);
  await check('lax WebCrypto: strict checks come first', async () => {
    crypto.subtle.verify = async () => true;
    try {
      strictEqual(await P.verifySignature(key, message, signature), true, 'the stub is in use');
      strictEqual(await P.verifySignature(key, message, withS(L)), false, 'S = L');
      strictEqual(await P.verifySignature(key, message, withS(2n ** 256n - 1n)), false, 'S = 2^256 - 1');
      strictEqual(await P.verifySignature(key, message, withR(keyWith(1n))), false, 'R of order 1');
      strictEqual(await P.verifySignature(key, message, withR(keyWith(0n, 1))), false, 'R of order 4');
      strictEqual(await P.verifySignature(key, message, withR(keyWith(p + 1n))), false, 'R with y = p + 1');
      strictEqual(await P.verifySignature(key, message, withR(keyWith(1n, 1))), false, 'R with x = 0, sign 1');
      strictEqual(await P.verifySignature(key, message, withR(keyWith(2n))), false, 'R not on the curve');
    } finally {
      delete crypto.subtle.verify;
    }
  });
}

/** Tokens the vectors lack, signed with the vector server key. */
async function mintedTokens({ check, expectCode, v, server }) {
  const fresh = v.token.text.slice(v.token.text.lastIndexOf('.') + 1);
  const u64 = (n) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, n); return b; };
  const str8 = (bytes) => [bytes.length, ...bytes];
  const utf8 = (text) => [...new TextEncoder().encode(text)];
  const mint = async ({ issued = 1767225600n, lifetime = 300n, rotation = 3, origin = utf8('https://a.example'),
    name = utf8('Mail') }) => {
    const body = Uint8Array.from([
      1, ...P.hexToBytes(v.server.key_id), ...u64(issued), ...u64(issued + lifetime), rotation,
      ...new Uint8Array(48).fill(7), ...str8(origin), ...str8(name),
    ]);
    const signed = Uint8Array.from([...utf8('sesame/1/token\0'), ...body]);
    const signature = new Uint8Array(await crypto.subtle.sign('Ed25519', server.privateKey, signed));
    return `sesame1.${P.b64urlEncode(Uint8Array.from([...body, ...signature]))}.${fresh}`;
  };
  const serverKey = server.publicKeyBytes;
  await check('minted: a leading U+FEFF is part of the service name', async () => {
    const decoded = P.decodeToken(await mint({ name: [0xef, 0xbb, 0xbf, ...utf8('Mail')] }));
    strictEqual(decoded.claims.service_name, '\ufeffMail');
    await P.verifyToken(decoded, serverKey, 1767225600n, 0n);
  });
  await check('minted: the limits themselves are valid', async () => {
    for (const fields of [{ lifetime: 600n }, { lifetime: 1n }, { rotation: 60 }, { rotation: 1 },
      { origin: utf8(`https://${'a'.repeat(92)}`) }, { name: utf8('é'.repeat(32)) }]) {
      P.decodeToken(await mint(fields));
    }
  });
  await check('minted: times at the end of u64 are exact', async () => {
    const max = 2n ** 64n - 1n;
    const decoded = P.decodeToken(await mint({ issued: max - 300n }));
    strictEqual(decoded.claims.expires_at, max);
    // expires_at + 10 is past 2^64 - 1: later than every now, so never expired.
    await P.verifyToken(decoded, serverKey, max, 10n);
    await rejects(P.verifyToken(decoded, serverKey, max, 0n), { code: 'token_expired' });
  });
  const cases = [
    ['lifetime 0', 'lifetime_too_long', { lifetime: 0n }],
    ['lifetime 601', 'lifetime_too_long', { lifetime: 601n }],
    ['expires before issued', 'lifetime_too_long', { issued: 1000n, lifetime: -1n }],
    ['rotation 61', 'invalid_rotation', { rotation: 61 }],
    ['lifetime before rotation', 'lifetime_too_long', { lifetime: 0n, rotation: 0 }],
    ['rotation before origin', 'invalid_rotation', { rotation: 61, origin: utf8('x') }],
    ['origin before name', 'invalid_origin', { origin: utf8('x'), name: [] }],
    ['origin not UTF-8', 'invalid_origin', { origin: [...utf8('https://a'), 0xff] }],
    ['origin with an overlong "/"', 'invalid_origin', { origin: [...utf8('https:'), 0xc0, 0xaf, 0x2f, 0x61] }],
    ['origin of 101 bytes', 'invalid_origin', { origin: utf8(`https://${'a'.repeat(93)}`) }],
    ['empty service name', 'invalid_service_name', { name: [] }],
    ['service name of 65 bytes', 'invalid_service_name', { name: utf8('x'.repeat(65)) }],
    ['service name not UTF-8', 'invalid_service_name', { name: [0x41, 0x80] }],
    ['service name with an encoded surrogate', 'invalid_service_name', { name: [0xed, 0xa0, 0x80] }],
    ['service name with a bidi control', 'invalid_service_name', { name: utf8('a\u202eb') }],
    ['service name ending in white space', 'invalid_service_name', { name: utf8('Mail\u3000') }],
  ];
  for (const [what, code, fields] of cases) {
    await expectCode(`minted: ${what}`, code, async () => P.decodeToken(await mint(fields)));
  }
}

async function times({ check, expectCode, token, serverKey, alice }) {
  const decoded = P.decodeToken(token);
  const { issued_at: issued, expires_at: expires } = decoded.claims;
  const max = 2n ** 64n - 1n;
  await check('times: sums above 2^64 - 1 neither wrap nor saturate', async () => {
    await P.verifyToken(decoded, serverKey, max, max);
    await P.verifyToken(decoded, serverKey, expires + 59n, 60n);
    await P.verifyToken(decoded, serverKey, issued - 60n, 60n);
    await P.verifyToken(decoded, serverKey, expires - 1n, 0n);
  });
  await expectCode('times: expired at expires_at', 'token_expired',
    () => P.verifyToken(decoded, serverKey, expires, 0n));
  await expectCode('times: expired past the leeway', 'token_expired',
    () => P.verifyToken(decoded, serverKey, expires + 60n, 60n));
  await expectCode('times: issued beyond the leeway', 'token_not_yet_valid',
    () => P.verifyToken(decoded, serverKey, issued - 61n, 60n));
  await expectCode('times: another pinned key', 'unknown_signing_key',
    () => P.verifyToken(decoded, alice.publicKeyBytes, issued, 0n));
  await expectCode('times: an unusable pinned key', 'weak_public_key',
    () => P.verifyToken(decoded, keyWith(1n), issued, 0n));
}

async function numbers({ check, expectCode, v, token, alice, other }) {
  const decoded = P.decodeToken(token);
  const context = { tokenDecoded: decoded, accountPublicKeyBytes: alice.publicKeyBytes };
  const login = v.responses.find((r) => r.purpose === 'login');
  await check('numbers: u8(N) is appended to what login signs', () => {
    const fields = { token, origin: decoded.claims.origin, serviceIdHex: decoded.claims.service_id, account: 'alice' };
    strictEqual(P.bytesToHex(P.signedBytes('login', { ...fields, number: 42 })), `${login.signed_bytes}2a`);
    strictEqual(P.bytesToHex(P.signedBytes('login', fields)), login.signed_bytes);
  });
  const signed = await P.signAnswer('login', decoded, { account: 'alice', key: alice, number: 42 });
  await check('numbers: a login with a number verifies', async () => {
    strictEqual(signed.number, 42);
    await P.verifyAnswer('login', signed, context);
  });
  await check('numbers: every purpose but deny signs one', async () => {
    for (const purpose of ['register', 'enroll', 'rekey']) {
      const request = await P.signAnswer(purpose, decoded, { account: 'alice', key: alice, newKey: other, number: 10 });
      await P.verifyAnswer(purpose, request, context);
    }
  });
  await expectCode('numbers: another number breaks the signature', 'bad_signature',
    () => P.verifyAnswer('login', { ...signed, number: 43 }, context));
  await expectCode('numbers: no number breaks the signature', 'bad_signature',
    () => P.verifyAnswer('login', { ...signed, number: undefined }, context));
  for (const number of [9, 100, 0, 256 + 42, 2 ** 32 - 1]) {
    await expectCode(`numbers: ${number} is refused when verifying`, 'invalid_number',
      () => P.verifyAnswer('login', { ...signed, number }, context));
  }
  // Not a u32 at all: the server's JSON types refuse the body before any field.
  for (const number of [-42, 42.5, '42', true, 2 ** 32]) {
    await expectCode(`numbers: ${JSON.stringify(number)} is not a body`, 'invalid_body',
      () => P.verifyAnswer('login', { ...signed, number }, context));
  }
  for (const number of [9, 100, 0, -42, 42.5, '42', 256 + 42, true]) {
    await expectCode(`numbers: ${JSON.stringify(number)} is refused when signing`, 'invalid_number',
      () => P.signAnswer('login', decoded, { account: 'alice', key: alice, number }));
  }
  await check('numbers: typed numbers', () => {
    for (const [typed, number] of [['42', 42], [' 42\n', 42], ['\u300010', 10], ['99', 99], ['0042', 42]]) {
      strictEqual(P.readNumber(typed), number, JSON.stringify(typed));
    }
  });
  for (const typed of ['', '4', '+42', '-42', '42.0', '٤٢', '4 2', '0042x', '100', '9', '１２', '\u200b42']) {
    await expectCode(`numbers: typed ${JSON.stringify(typed)}`, 'invalid_number', () => P.readNumber(typed));
  }
  await check('numbers: deny never carries one', async () => {
    await rejects(P.signAnswer('deny', decoded, { key: alice, number: 42 }), TypeError);
    const fields = { token, origin: '', serviceIdHex: '', publicKey: alice.publicKeyBytes, number: 42 };
    throws(() => P.signedBytes('deny', fields), TypeError);
  });
  const deny = await P.signAnswer('deny', decoded, { key: alice });
  await expectCode('numbers: a deny with a number is not a deny body', 'invalid_body',
    () => P.verifyAnswer('deny', { ...deny, number: 42 }, context));
  const bodies = [
    ['a deny with a label', 'deny', { ...deny, label: 'phone' }],
    ['a login with a public key', 'login', { ...signed, public_key: deny.public_key }],
    ['a login without a signature', 'login', { ...signed, signature: undefined }],
    ['an account that is not a string', 'login', { ...signed, account: 42 }],
    ['a label that is not a string', 'register', { ...deny, account: 'alice', label: 7 }],
    ['an array', 'login', [signed]],
    ['null', 'login', null],
  ];
  for (const [what, purpose, request] of bodies) {
    await expectCode(`body: ${what}`, 'invalid_body', () => P.verifyAnswer(purpose, request, context));
  }
  await check('body: null optional members count as absent', async () => {
    const register = await P.signAnswer('register', decoded, { account: 'alice', key: alice });
    await P.verifyAnswer('register', { ...register, label: null, number: null }, context);
  });
}

/** The order of the phone draft's section C: account, key, label, number, signatures. */
async function orderOfAnswerChecks({ check, expectCode, token, alice, other }) {
  const decoded = P.decodeToken(token);
  const context = { tokenDecoded: decoded, accountPublicKeyBytes: alice.publicKeyBytes };
  const weakKey = P.b64urlEncode(keyWith(1n));
  const register = await P.signAnswer('register', decoded, { account: 'alice', key: alice, label: 'phone' });
  const enroll = await P.signAnswer('enroll', decoded, { account: 'alice', key: other, label: 'phone' });
  const rekey = await P.signAnswer('rekey', decoded, { account: 'alice', key: alice, newKey: other });
  const cases = [
    ['account before key', 'invalid_account_name', 'register', { ...register, account: ' x', public_key: 'AA' }],
    ['unreadable key before weak key', 'invalid_public_key', 'register', { ...register, public_key: 'AA=' }],
    ['key before label', 'weak_public_key', 'register', { ...register, public_key: weakKey, label: '' }],
    ['label before number', 'invalid_key_label', 'enroll', { ...enroll, label: 'a\u202eb', number: 7 }],
    ['number before signature', 'invalid_number', 'enroll', { ...enroll, number: 7, signature: 'A' }],
    ['signature encoding', 'invalid_signature_encoding', 'enroll', { ...enroll, signature: enroll.signature.slice(1) }],
    ['rekey: current signature first', 'bad_signature', 'rekey',
      { ...rekey, signature: rekey.new_signature, new_signature: 'A' }],
    ['rekey: then the new one', 'invalid_signature_encoding', 'rekey', { ...rekey, new_signature: 'A' }],
    ['login by another key', 'bad_signature', 'login',
      { ...(await P.signAnswer('login', decoded, { account: 'alice', key: other })) }],
  ];
  for (const [what, code, purpose, request] of cases) {
    await expectCode(`answer order: ${what}`, code, () => P.verifyAnswer(purpose, request, context));
  }
  await check('answer order: the unchanged answers verify', async () => {
    await P.verifyAnswer('register', register, context);
    await P.verifyAnswer('enroll', enroll, context);
    await P.verifyAnswer('rekey', rekey, context);
  });
  await expectCode('signing refuses a bad account name', 'invalid_account_name',
    () => P.signAnswer('login', decoded, { account: 'alice\n', key: alice }));
  await expectCode('signing refuses a bad label', 'invalid_key_label',
    () => P.signAnswer('register', decoded, { account: 'alice', key: alice, label: ' phone' }));
}

/** The app runs under a CSP without 'unsafe-eval', and in browsers: no Node APIs. */
async function browserSafeSource({ check }) {
  const folder = new URL('../', import.meta.url);
  const files = (await readdir(folder)).filter((f) => /^protocol.*\.js$/.test(f));
  await check('source: no eval, no Function, no Node APIs', async () => {
    for (const file of files) {
      const text = await readFile(new URL(file, folder), 'utf8');
      const found = /\beval\s*\(|\bFunction\s*\(|\bBuffer\b|\brequire\s*\(|\bprocess\.|from 'node:/.exec(text);
      if (found) throw new Error(`${file} uses ${found[0]}`);
    }
  });
}

// §6.4: what an authenticator shows of a key that joined the account.
async function newKeys({ check }) {
  const at = (seconds) => `t${seconds}`;
  const page = 'https://login.example.com/services/a1/account';
  const key = (kind, label, from) => ({ kind, label, added_at: 1764547200, added_from: from });
  await check('new keys: one sentence with the name, the time, the address and the page', () => {
    deepStrictEqual(P.newKeyNotice('alice', key('sesame', 'phone', '203.0.113.9'), page, at), {
      text: 'A new authenticator "phone" was added to alice on t1764547200 from 203.0.113.9. '
        + 'If that was not you, remove it on ',
      href: page,
    });
    strictEqual(P.newKeyNotice('alice', key('passkey', '', '::1'), page, at).text.startsWith('A new passkey was added'), true);
    strictEqual(P.newKeyNotice('alice', key('hardware', '', ''), page, at).text.startsWith('A new authenticator was'), true);
  });
  await check('new keys: a name that is no key label, and an address that is none, are not shown', () => {
    for (const [label, from] of [['ph\u202eone', 'here'], ['a\u001b[2Jb', '203.0.113.9 evil'], ['x'.repeat(65), '1.2.3']]) {
      const { text } = P.newKeyNotice('alice', key('sesame', label, from), page, at);
      strictEqual(text, 'A new authenticator was added to alice on t1764547200. If that was not you, remove it on ');
    }
  });
  await check('new keys: addresses', () => {
    for (const ip of ['203.0.113.9', '0.0.0.0', '::1', '2001:db8::7', '::ffff:192.0.2.1']) strictEqual(P.isIpAddress(ip), true, ip);
    for (const text of ['', 'here', '256.1.1.1', '1.2.3', '01.2.3.4', '1.2.3.4 ', '[::1]', 'fe80::1%eth0', ':::']) {
      strictEqual(P.isIpAddress(text), false, text);
    }
  });
}
