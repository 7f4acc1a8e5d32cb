// The phone's keystore: account keys, pinned server keys and the unlock
// credential, in IndexedDB. Keys are Ed25519 keys of Web Crypto; nothing
// here implements a cipher or a signature.
//
// Approving needs the phone's own unlock, through WebAuthn user
// verification on this app's origin. Where the platform has the WebAuthn
// PRF extension, the unlock is also what encrypts the keys: each private
// key is stored only wrapped (AES-GCM) under a key derived from the PRF
// output, so no key can sign without the unlock. Elsewhere the keys are
// non-extractable CryptoKeys stored as they are, and the app checks the
// unlock (the UV flag) before each signature.

const DB_NAME = 'sesame';
const DB_VERSION = 1;
const ED25519 = { name: 'Ed25519' };
const WRAP_LABEL = 'sesame/1/app-key-wrap';
const UNLOCK_TIMEOUT_MS = 120_000;
const FLAG_USER_VERIFIED = 0x04; // authenticatorData byte 32, bit 2 (WebAuthn §6.1)

/** A keystore failure, with one sentence for the person in `.message`. */
export class KeystoreError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'KeystoreError';
    this.code = code;
  }
}

// ------------------------------------------------------------ what the browser has

/**
 * The sentence naming what this browser lacks for Sesame, or null when it
 * has all of it: a secure context, Web Crypto with Ed25519, IndexedDB and
 * WebAuthn. There is deliberately no fallback to Ed25519 in JavaScript:
 * only Web Crypto keeps a private key out of reach of the page's own code.
 */
export async function missingFeature() {
  if (!self.isSecureContext) {
    return 'This page was not opened over HTTPS, so the browser gives it no Web Crypto and no WebAuthn. Open the app from its https:// address.';
  }
  if (!self.crypto?.subtle) return 'This browser has no Web Crypto (crypto.subtle), which Sesame needs to keep its keys.';
  try {
    await crypto.subtle.generateKey(ED25519, false, ['sign', 'verify']);
  } catch {
    return 'This browser\'s Web Crypto cannot make Ed25519 keys, which Sesame signs with. Update the browser: current versions of Chrome, Firefox and Safari can.';
  }
  if (!self.indexedDB) {
    return 'This browser gives the app no IndexedDB (a private mode may turn it off), where Sesame keeps its keys.';
  }
  if (!self.PublicKeyCredential || !navigator.credentials) {
    return 'This browser has no WebAuthn, which Sesame needs to check your phone\'s unlock before it approves anything.';
  }
  return null;
}

// ------------------------------------------------------------ storage

let opening = null;
let lostListener = () => {};

/** Calls `listener` when the browser takes the storage away while the app is open (site data cleared). */
export function onStorageLost(listener) {
  lostListener = listener;
}

function db() {
  opening ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = () => {
      const database = request.result;
      database.createObjectStore('pins', { keyPath: 'origin' });
      database.createObjectStore('accounts', { keyPath: ['origin', 'service_id', 'account'] });
      database.createObjectStore('settings', { keyPath: 'name' });
    };
    request.onsuccess = () => {
      const database = request.result;
      // "close" without our asking: the user or the browser deleted the data.
      database.onclose = () => {
        opening = null;
        lostListener();
      };
      database.onversionchange = () => {
        database.close();
        opening = null;
      };
      resolve(database);
    };
    request.onerror = () => {
      opening = null;
      reject(storageError(request.error));
    };
  });
  return opening;
}

/**
 * Runs `work(store)` in one transaction on one object store and resolves
 * with the result of the request it returns, once the transaction has
 * committed: a change is stored whole or not at all.
 */
async function transact(storeName, mode, work) {
  const database = await db();
  return new Promise((resolve, reject) => {
    let transaction;
    try {
      transaction = database.transaction(storeName, mode);
    } catch (error) {
      reject(storageError(error));
      return;
    }
    const request = work(transaction.objectStore(storeName));
    transaction.oncomplete = () => resolve(request?.result);
    transaction.onabort = () => reject(storageError(transaction.error ?? request?.error));
  });
}

function storageError(error) {
  switch (error?.name) {
    case 'QuotaExceededError':
      return new KeystoreError('storage_full', 'This phone has no room left for Sesame\'s data. Free some space, then try again. Nothing was stored.');
    case 'ConstraintError':
      return new KeystoreError('exists', 'This phone already has a key for that account at this service.');
    case 'DataCloneError':
      return new KeystoreError('storage_unusable', 'This browser cannot store a protected key for Sesame. Nothing was stored.');
    default:
      return new KeystoreError('storage_lost', 'Sesame cannot use its storage on this phone; it may have been cleared. Reload the app and try again.');
  }
}

/** Asks the browser not to clear Sesame's storage when space runs low; true when it agrees. */
export async function askPersistence() {
  return (await navigator.storage?.persist?.()) ?? false;
}

/** Whether the browser promised to keep Sesame's storage; null when it cannot say. */
export async function isPersisted() {
  return (await navigator.storage?.persisted?.()) ?? null;
}

// ------------------------------------------------------------ pinned server keys

/** The pin of `origin`: {origin, public_key (Uint8Array), key_id, pinned_at (ms)}, or undefined. */
export function getPin(origin) {
  return transact('pins', 'readonly', (store) => store.get(origin));
}

/** Pins `public_key` for `origin`; `add`, so that an existing pin is never replaced. */
export async function addPin({ origin, public_key, key_id }) {
  const pin = { origin, public_key, key_id, pinned_at: Date.now() };
  await transact('pins', 'readwrite', (store) => store.add(pin));
  return pin;
}

export function listPins() {
  return transact('pins', 'readonly', (store) => store.getAll());
}

export function removePin(origin) {
  return transact('pins', 'readwrite', (store) => store.delete(origin));
}

// ------------------------------------------------------------ accounts

/**
 * An account record: {origin, service_id, service_name, account,
 * public_key (Uint8Array), created_at (ms), confirmed (the server accepted
 * it), key_state ('pending' until the page confirms it, or 'active'),
 * protection ('prf' or 'uv'), and wrapped {iv, data} or private_key}.
 */
export function listAccounts() {
  return transact('accounts', 'readonly', (store) => store.getAll());
}

export async function accountsAt(origin, serviceId) {
  return (await listAccounts()).filter((a) => a.origin === origin && a.service_id === serviceId);
}

const slotKey = ({ origin, service_id, account }) => [origin, service_id, account];

export function getAccount(slot) {
  return transact('accounts', 'readonly', (store) => store.get(slotKey(slot)));
}

export function removeAccount(slot) {
  return transact('accounts', 'readwrite', (store) => store.delete(slotKey(slot)));
}

/** Records what the server said of a new key: accepted, and its state ('pending' or 'active'). */
export function markAccepted(slot, keyState) {
  return transact('accounts', 'readwrite', (store) => {
    const read = store.get(slotKey(slot));
    read.onsuccess = () => {
      if (read.result) store.put({ ...read.result, confirmed: true, key_state: keyState });
    };
    return read;
  });
}

/**
 * Makes and stores a key for `slot` ({origin, service_id, service_name,
 * account}), committed before the caller sends anything (PROTOCOL.md §12):
 * an account on the server whose key is lost would be worse than a local
 * key the server never heard of. Refuses to replace a key already there.
 * Returns {record, privateKey}, `privateKey` being the one to sign with.
 */
export async function newAccountKey(unlocked, slot) {
  const base = { ...slot, created_at: Date.now(), confirmed: false, key_state: 'pending', protection: unlocked.mode };
  if (unlocked.mode === 'prf') {
    // Extractable only for the moment it takes to wrap it.
    const pair = await crypto.subtle.generateKey(ED25519, true, ['sign', 'verify']);
    const publicKey = await rawPublicKey(pair.publicKey);
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const data = new Uint8Array(await crypto.subtle.wrapKey('pkcs8', pair.privateKey, unlocked.wrappingKey, gcm(iv, publicKey)));
    const record = { ...base, public_key: publicKey, wrapped: { iv, data } };
    await transact('accounts', 'readwrite', (store) => store.add(record));
    // Sign with the key as stored, unwrapped: if the stored bytes did not
    // open, the server must not hear of this key, nor this phone keep it.
    try {
      return { record, privateKey: await signingKey(unlocked, record) };
    } catch (error) {
      await removeAccount(record);
      throw error;
    }
  }
  const pair = await crypto.subtle.generateKey(ED25519, false, ['sign', 'verify']);
  const record = { ...base, public_key: await rawPublicKey(pair.publicKey), private_key: pair.privateKey };
  await transact('accounts', 'readwrite', (store) => store.add(record));
  return { record, privateKey: pair.privateKey };
}

/**
 * The private key of `record`, ready to sign, for the `unlocked` session:
 * unwrapped as a non-extractable key when it is stored wrapped. The caller
 * drops it after the one signature.
 */
export async function signingKey(unlocked, record) {
  if (record.protection !== unlocked.mode) {
    throw new KeystoreError('key_unreadable', 'This account\'s key was stored under another kind of unlock and cannot be used here.');
  }
  if (record.protection !== 'prf') return record.private_key;
  try {
    return await crypto.subtle.unwrapKey('pkcs8', record.wrapped.data, unlocked.wrappingKey,
      gcm(record.wrapped.iv, record.public_key), ED25519, false, ['sign']);
  } catch {
    throw new KeystoreError('key_unreadable', 'This account\'s key does not open with this phone\'s unlock, so it cannot sign.');
  }
}

/** A key made for one answer only: the refusal of a request (PROTOCOL.md §4). */
export async function oneTimeKey() {
  const pair = await crypto.subtle.generateKey(ED25519, false, ['sign', 'verify']);
  return { publicKey: await rawPublicKey(pair.publicKey), privateKey: pair.privateKey };
}

async function rawPublicKey(key) {
  return new Uint8Array(await crypto.subtle.exportKey('raw', key));
}

// The public key is the additional data, so a wrapped key opens only as
// the key of the record it was stored with.
const gcm = (iv, publicKey) => ({ name: 'AES-GCM', iv, additionalData: publicKey });

// ------------------------------------------------------------ the phone's unlock

/** How keys are protected: 'prf', 'uv', or null before the first approval. */
export async function protection() {
  return (await transact('settings', 'readonly', (store) => store.get('unlock')))?.mode ?? null;
}

/**
 * Asks for the phone's unlock (PIN, fingerprint, face) through WebAuthn
 * with user verification required. The first time, this creates the
 * app's credential, and with it decides the protection for good. Returns
 * {mode: 'prf', wrappingKey} or {mode: 'uv'}; a cancelled or failed unlock
 * throws KeystoreError 'unlock_failed'.
 */
export async function unlock() {
  const setting = await transact('settings', 'readonly', (store) => store.get('unlock'));
  return setting ? assertUnlock(setting) : createUnlock();
}

// 32 fixed bytes: SHA-256 of the label. WebAuthn hashes the salt again with
// its own prefix, so this only has to be fixed and Sesame's own.
async function prfSalt() {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(WRAP_LABEL)));
}

async function createUnlock() {
  const options = {
    publicKey: {
      rp: { id: location.hostname, name: 'Sesame' },
      user: { id: crypto.getRandomValues(new Uint8Array(16)), name: 'Sesame', displayName: 'Sesame on this phone' },
      challenge: crypto.getRandomValues(new Uint8Array(32)),
      pubKeyCredParams: [-8, -7, -257].map((alg) => ({ type: 'public-key', alg })),
      // "Preferred", not required: a phone without a platform authenticator may still use another.
      hints: ['client-device'],
      authenticatorSelection: { residentKey: 'preferred', userVerification: 'required' },
      attestation: 'none',
      timeout: UNLOCK_TIMEOUT_MS,
      extensions: { prf: { eval: { first: await prfSalt() } } },
    },
  };
  const credential = await webAuthn(() => navigator.credentials.create(options));
  const prf = credential.getClientExtensionResults().prf;
  const setting = {
    name: 'unlock',
    credential_id: new Uint8Array(credential.rawId),
    mode: prf?.enabled || prf?.results?.first ? 'prf' : 'uv',
    created_at: Date.now(),
  };
  const authenticatorData = credential.response.getAuthenticatorData?.();
  await transact('settings', 'readwrite', (store) => store.add(setting));
  // The creation was itself an unlock, when the phone says it verified the
  // person and, for PRF, already gave its output: then one prompt is enough.
  if (authenticatorData && isUserVerified(authenticatorData)) {
    if (setting.mode === 'uv') return { mode: 'uv' };
    if (prf?.results?.first) return { mode: 'prf', wrappingKey: await wrappingKey(prf.results.first) };
  }
  return assertUnlock(setting);
}

async function assertUnlock(setting) {
  const options = {
    publicKey: {
      challenge: crypto.getRandomValues(new Uint8Array(32)),
      rpId: location.hostname,
      allowCredentials: [{ type: 'public-key', id: setting.credential_id }],
      userVerification: 'required',
      timeout: UNLOCK_TIMEOUT_MS,
      extensions: setting.mode === 'prf' ? { prf: { eval: { first: await prfSalt() } } } : {},
    },
  };
  const assertion = await webAuthn(() => navigator.credentials.get(options));
  if (!isUserVerified(assertion.response.authenticatorData)) {
    throw new KeystoreError('unlock_failed', 'The phone did not check that it is you (no PIN, fingerprint or face), so nothing was signed and nothing was sent.');
  }
  if (setting.mode === 'uv') return { mode: 'uv' };
  const first = assertion.getClientExtensionResults().prf?.results?.first;
  if (!first) {
    throw new KeystoreError('unlock_failed', 'The phone\'s unlock did not give the secret that opens your keys, so nothing was signed and nothing was sent.');
  }
  return { mode: 'prf', wrappingKey: await wrappingKey(first) };
}

async function webAuthn(call) {
  try {
    const credential = await call();
    if (credential) return credential;
  } catch (error) {
    if (error?.name === 'SecurityError') {
      throw new KeystoreError('unlock_failed', `The phone refused to use its unlock for ${location.hostname}: WebAuthn needs HTTPS and a domain name. Nothing was sent.`);
    }
  }
  throw new KeystoreError('unlock_failed', 'The unlock was cancelled or did not succeed, so nothing was signed and nothing was sent.');
}

function isUserVerified(authenticatorData) {
  const bytes = new Uint8Array(authenticatorData);
  return bytes.length > 32 && (bytes[32] & FLAG_USER_VERIFIED) !== 0;
}

/** AES-256-GCM key, derived by HKDF-SHA-256 from the PRF output, usable only to (un)wrap keys. */
async function wrappingKey(prfOutput) {
  const base = await crypto.subtle.importKey('raw', prfOutput, 'HKDF', false, ['deriveKey']);
  return crypto.subtle.deriveKey(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: new TextEncoder().encode(WRAP_LABEL) },
    base, { name: 'AES-GCM', length: 256 }, false, ['wrapKey', 'unwrapKey'],
  );
}
