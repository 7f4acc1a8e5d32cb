// Sesame's phone authenticator: the screens and the flows. The protocol
// (decoding, verification, signed bytes) is protocol.js's; keys and pins
// are keystore.js's; the camera is scanner.js's. Every text that came from
// a token or a server is shown with textContent, never as HTML.

import {
  ProtocolError, errorMessage, decodeToken, readInput, verifyToken, keyId, checkPublicKey, b64urlDecode,
  signAnswer, confirmationCode, checkAccountName, hexToBytes, readNewKeys, newKeyNotice,
} from './protocol.js';
import * as keystore from './keystore.js';
import { startScanner, ScanError } from './scanner.js';

const $ = (id) => document.getElementById(id);
const LEEWAY = 60n; // seconds of clock difference allowed, as the reference authenticator does
const OFFLINE = 'The Sesame server cannot be reached. Check your connection.';

/** A failure the app itself describes; `.message` is the one sentence shown. */
class AppError extends Error {}

/** A refusal from the server: its §7 code, HTTP status and sentence. */
class ServerError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// The request on screen: the verified token and the server's context.
let current = null;
let stopScanning = null;
let removing = null; // the account whose removal waits for confirmation
let unpinning = null; // the pin whose removal waits for confirmation
let reachable = true; // whether the last call reached the server
// Opened by a login page's "approve in this browser" link (`/app?from=page#…`).
const openedFromPage = new URLSearchParams(location.search).get('from') === 'page';

// ------------------------------------------------------------ saying things

/** Puts one sentence in the status line, which screen readers announce. */
function say(text, kind = '') {
  const status = $('status');
  status.setAttribute('aria-live', kind === 'bad' ? 'assertive' : 'polite');
  status.className = kind ? `status ${kind}` : 'status';
  status.textContent = text;
}

function sentence(error) {
  if (error instanceof Error && error.message &&
      (error instanceof ProtocolError || error instanceof AppError || error instanceof ServerError ||
       error instanceof keystore.KeystoreError || error instanceof ScanError)) {
    return error.message;
  }
  console.error(error);
  return `The app met an unexpected error (${error?.name ?? 'unknown'}). Reload it and try again.`;
}

const fail = (error) => say(sentence(error), 'bad');

/** A key id (16 hex digits) as people compare it: groups of four. */
const fingerprint = (id) => id.match(/.{4}/g).join(' ');
const localTime = (seconds) => new Date(Number(seconds) * 1000).toLocaleString();
const localDate = (ms) => new Date(ms).toLocaleDateString();
const nowSeconds = () => BigInt(Math.floor(Date.now() / 1000));

// ------------------------------------------------------------ the server

/**
 * Calls the app's own server (the CSP allows no other). A network failure
 * is the OFFLINE sentence; a Sesame error body becomes a ServerError with
 * the server's own sentence.
 */
async function api(path, body) {
  const init = body === undefined
    ? { cache: 'no-store' }
    : { method: 'POST', cache: 'no-store', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    showOnline(false);
    throw new AppError(OFFLINE);
  }
  showOnline(true);
  let data = null;
  try {
    data = await response.json();
  } catch {
    // Not JSON: a proxy's error page, say. Judged below by the status alone.
  }
  if (response.ok && data && typeof data === 'object') return data;
  if (!response.ok && typeof data?.error === 'string') {
    const message = typeof data.message === 'string' && data.message.trim() ? data.message : errorMessage(data.error);
    throw new ServerError(response.status, data.error, message.replace(/\s+/g, ' ').trim());
  }
  throw new AppError(response.ok
    ? 'The server gave an answer that is not Sesame\'s.'
    : `The server failed (HTTP ${response.status}). Try again in a moment.`);
}

// A refusal that leaves nothing changed on the server (PROTOCOL.md §13 step 4):
// a 4xx with a Sesame error body. A 5xx or a lost answer says nothing.
const isRefusal = (error) => error instanceof ServerError && error.status >= 400 && error.status < 500;

// ------------------------------------------------------------ screens

function showView(name) {
  for (const view of ['approve', 'accounts', 'about']) {
    $(`view-${view}`).hidden = view !== name;
    const tab = $(`nav-${view}`);
    if (view === name) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  if (name !== 'approve') stopCamera();
  else if (!current) showCard('start'); // a finished request gives way to a new one
  if (name === 'accounts') renderAccounts().catch(fail);
  if (name === 'about') renderAbout().catch(fail);
}

/** Shows one card of the approve view. */
function showCard(id) {
  for (const card of ['start', 'refusal', 'request', 'result']) $(card).hidden = card !== id;
  if (id !== 'start') stopCamera();
}

function backToStart() {
  current = null;
  showCard('start');
  $('token-input').value = '';
}

/** Runs an answer with its buttons disabled, so that it is sent once. */
async function busy(work) {
  const buttons = $('request').querySelectorAll('button');
  for (const button of buttons) button.disabled = true;
  try {
    await work();
  } catch (error) {
    fail(error);
  } finally {
    for (const button of buttons) button.disabled = false;
  }
}

// ------------------------------------------------------------ 1. the token

/** From a link, a paste or the camera to the request on screen. */
async function openRequest(text) {
  showView('approve');
  say('Checking the request…');
  try {
    const decoded = decodeToken(text);
    const { origin } = decoded.claims;
    if (origin !== location.origin) {
      throw new AppError(`This request is for ${origin}, but this app belongs to ${location.origin} and talks to no other server. Open the link in the QR code with your camera instead.`);
    }
    const pin = await pinFor(origin);
    if (decoded.claims.key_id !== pin.key_id) {
      refuse(decoded, pin);
      return;
    }
    await verifyToken(decoded, pin.public_key, nowSeconds(), LEEWAY);
    const context = await api('/api/authenticator/context', { token: decoded.text });
    checkContext(context, decoded);
    const accounts = await keystore.accountsAt(origin, decoded.claims.service_id);
    say('');
    showRequest(decoded, context, accounts, pin);
  } catch (error) {
    showCard('start');
    fail(error);
  }
}

/**
 * The key pinned for `origin`, which is this app's own (PROTOCOL.md §5). On
 * first meeting, the server's identity document is fetched, checked and
 * pinned; the pin's `first` then says so. A pin is never replaced here.
 */
async function pinFor(origin) {
  const pinned = await keystore.getPin(origin);
  if (pinned) return { ...pinned, first: false };
  const identity = await api('/.well-known/sesame');
  const publicKey = await checkIdentity(identity, origin);
  try {
    return { ...(await keystore.addPin({ origin, public_key: publicKey, key_id: identity.key_id })), first: true };
  } catch (error) {
    // Another tab of the app pinned it meanwhile: that pin stands.
    if (error.code === 'exists') return { ...(await keystore.getPin(origin)), first: false };
    throw error;
  }
}

/** §5: the document names this origin, and its key id is that of its key. */
async function checkIdentity(identity, origin) {
  const invalid = new AppError(`${origin} does not prove its identity: its /.well-known/sesame document is not valid. Nothing was pinned and nothing was sent.`);
  if (identity.version !== 1 || identity.origin !== origin || typeof identity.public_key !== 'string' ||
      typeof identity.key_id !== 'string') {
    throw invalid;
  }
  let publicKey;
  try {
    publicKey = checkPublicKey(b64urlDecode(identity.public_key));
  } catch {
    throw invalid;
  }
  if ((await keyId(publicKey)) !== identity.key_id) throw invalid;
  return publicKey;
}

/** The pinned key changed: the person decides, not the network (§5). */
function refuse(decoded, pin) {
  say('');
  $('refusal-text').textContent =
    `This request is signed by the key ${fingerprint(decoded.claims.key_id)}, but the key this phone pinned for ` +
    `${pin.origin} on ${localDate(pin.pinned_at)} is ${fingerprint(pin.key_id)}. Someone may be impersonating ` +
    'the server, or its operator replaced its key. Only if the operator confirms the change, forget the old key ' +
    'under About, then scan again.';
  showCard('refusal');
  $('refusal-back').focus();
}

/**
 * The context must be about the token's own challenge, service and origin,
 * for a purpose this app knows how to answer.
 */
function checkContext(context, decoded) {
  const { claims } = decoded;
  const named = context.purpose !== 'enroll' || isName(context.account);
  if (context.challenge_id !== claims.challenge_id || context.service_id !== claims.service_id ||
      context.origin !== claims.origin || !named) {
    throw new AppError('The server described another request than this one. Nothing was sent.');
  }
  if (context.purpose !== undefined && !Object.hasOwn(PURPOSES, context.purpose)) {
    throw new AppError('This request asks for something this version of the app cannot answer. Nothing was sent.');
  }
}

function isName(text) {
  try {
    checkAccountName(text);
    return true;
  } catch {
    return false;
  }
}

// ------------------------------------------------------------ 2. who is asking

const PURPOSES = { sign_in: 'Sign in', enroll: 'Add this phone to an account' };
const FINAL_STATES = {
  completed: 'This request was already answered.',
  denied: 'This request was already refused.',
  cancelled: 'This request was cancelled on the page that made it.',
};

function showRequest(decoded, context, accounts, pin) {
  const purpose = context.purpose ?? 'sign_in'; // §6.2: no member means sign_in
  const enrolling = purpose === 'enroll';
  current = { decoded, context, purpose };
  const { claims } = decoded;

  $('req-title').textContent = enrolling
    ? `Add this phone to an account at ${claims.service_name}?`
    : `Sign in to ${claims.service_name}?`;
  showPin(pin);
  $('req-purpose').textContent = PURPOSES[purpose] ?? purpose;
  $('req-service').textContent = claims.service_name;
  $('req-origin').textContent = claims.origin;
  $('req-account-label').hidden = !enrolling;
  $('req-account').hidden = !enrolling;
  $('req-account').textContent = enrolling ? context.account : '';
  $('req-browser').textContent = context.user_agent || 'not given';
  $('req-ip').textContent = context.ip || 'not given';
  $('req-when').textContent = localTime(context.requested_at);
  $('req-expires').textContent = localTime(context.expires_at);

  const over = context.status !== 'pending';
  if (over) current = null; // nothing left to answer
  $('req-over').hidden = !over;
  $('req-over').textContent = over
    ? `${FINAL_STATES[context.status] ?? 'This request is over.'} Start again on the page that is signing in.`
    : '';
  $('answers').hidden = over;
  $('over-back').hidden = !over;

  $('number-block').hidden = context.number_matching !== true;
  $('number-input').value = ''; // never suggest a number (§14)

  $('login-form').hidden = enrolling || accounts.length === 0;
  $('login-none').hidden = enrolling || accounts.length > 0;
  fillAccounts(accounts);
  $('register-form').hidden = enrolling;
  $('register-name').value = '';
  $('enroll-form').hidden = !enrolling;
  $('enroll-account').textContent = enrolling ? context.account : '';
  $('enroll-label').value = '';

  showCard('request');
  $('req-title').focus();
}

function showPin(pin) {
  const notice = $('pin-notice');
  notice.hidden = false;
  if (pin.first) {
    notice.className = 'pin new';
    notice.textContent = `First time with ${pin.origin}: this phone pinned its server key, fingerprint ` +
      `${fingerprint(pin.key_id)}. A request signed by another key will be refused from now on.`;
  } else {
    notice.className = 'pin known';
    notice.textContent = `Known server: its key ${fingerprint(pin.key_id)} matches the one pinned on ${localDate(pin.pinned_at)}.`;
  }
}

function fillAccounts(accounts) {
  const select = $('login-account');
  select.replaceChildren();
  for (const record of [...accounts].sort((a, b) => a.account.localeCompare(b.account))) {
    const option = document.createElement('option');
    option.value = record.account;
    option.textContent = record.account + (record.key_state === 'pending' ? ' (waiting for confirmation)' : '');
    select.append(option);
  }
}

// ------------------------------------------------------------ 3. the answers

/** The number the person typed, when the request asks for one (§14). */
function typedNumber() {
  if (current.context.number_matching !== true) return undefined;
  const text = $('number-input').value.trim();
  if (!/^[0-9]{2}$/.test(text)) {
    $('number-input').focus();
    throw new AppError('Type the two-digit number shown on the page that is signing in.');
  }
  return Number(text);
}

/** The phone's unlock, set up by the first approval. */
async function unlockPhone() {
  say(await keystore.protection()
    ? 'Unlock your phone to approve.'
    : 'First approval: your phone now sets up its unlock (PIN, fingerprint or face) for Sesame. Follow its prompt.');
  return keystore.unlock();
}

const slotOf = (account) => ({
  origin: current.decoded.claims.origin,
  service_id: current.decoded.claims.service_id,
  account,
});

async function logIn() {
  const { decoded } = current;
  const account = $('login-account').value;
  const record = await keystore.getAccount(slotOf(account));
  if (!record) {
    throw new AppError(`The key of ${account} is no longer on this phone; the browser's storage may have been cleared.`);
  }
  const number = typedNumber();
  const unlocked = await unlockPhone();
  const privateKey = await keystore.signingKey(unlocked, record);
  const body = await signAnswer('login', decoded, { account, key: { privateKey }, number });
  say('Sending your approval…');
  let outcome;
  try {
    outcome = await api('/api/authenticator/login', body);
  } catch (error) {
    if (error instanceof ServerError && error.code === 'unknown_account') {
      throw new ServerError(error.status, error.code,
        `${decoded.claims.service_name} no longer knows ${account}. You can remove its key under Accounts.`);
    }
    throw error;
  }
  // A login proves the server holds this key, and that it is active.
  if (!record.confirmed || record.key_state !== 'active') await keystore.markAccepted(record, 'active');
  showResult(`Signed in as ${account} at ${decoded.claims.service_name}.`, 'The page that asked is signing in.');
  const accountPage = `${decoded.claims.origin}/services/${decoded.claims.service_id}/account`;
  showNewKeys(readNewKeys(outcome).map((key) => newKeyNotice(account, key, accountPage, localTime)));
}

/** Warnings under a sign-in's result, one per key; none hides the list. */
function showNewKeys(notices) {
  const list = $('result-new-keys');
  list.replaceChildren(...notices.map(({ text, href }) => {
    const item = document.createElement('li');
    const link = document.createElement('a');
    link.href = href;
    link.textContent = 'your account page';
    item.append(text, link, '.');
    return item;
  }));
  list.hidden = notices.length === 0;
}

async function register() {
  const account = $('register-name').value;
  try {
    checkAccountName(account);
  } catch (error) {
    $('register-name').focus();
    throw error;
  }
  await addKey('register', account, undefined);
}

async function enroll() {
  const label = $('enroll-label').value;
  await addKey('enroll', current.context.account, label === '' ? undefined : label);
}

/**
 * Register or enroll: a new key, stored before the server hears of it and
 * taken back out when the server refuses it (PROTOCOL.md §12). When the
 * answer is lost, the key stays: the account may exist with it.
 */
async function addKey(purpose, account, label) {
  const { decoded } = current;
  const { claims } = decoded;
  const slot = slotOf(account);
  if (await keystore.getAccount(slot)) {
    throw new AppError(purpose === 'enroll'
      ? `This phone already has a key for ${account} at ${claims.service_name}: it is already one of its authenticators.`
      : `This phone already has a key for ${account} at ${claims.service_name}: log in with it instead.`);
  }
  const number = typedNumber();
  const unlocked = await unlockPhone();
  const { record, privateKey } = await keystore.newAccountKey(unlocked, { ...slot, service_name: claims.service_name });
  keystore.askPersistence().catch(() => undefined); // a hint to the browser; it may say no
  let body;
  try {
    body = await signAnswer(purpose, decoded, {
      account, key: { privateKey, publicKeyBytes: record.public_key }, number, label,
    });
  } catch (error) {
    await keystore.removeAccount(slot);
    throw error;
  }
  say('Sending your approval…');
  let done;
  try {
    done = await api(`/api/authenticator/${purpose}`, body);
  } catch (error) {
    if (isRefusal(error)) {
      await keystore.removeAccount(slot);
      if (error.code === 'account_exists') $('register-name').focus();
      throw error;
    }
    const why = error.message === OFFLINE ? `${OFFLINE} It` : 'The server failed before it answered, so it';
    throw new AppError(`${why} is not known whether it took the key of ${account}. The key is kept on ` +
      'this phone: try to log in with it, and remove it under Accounts if that fails.');
  }
  const pending = done.key_state === 'pending';
  await keystore.markAccepted(slot, pending ? 'pending' : 'active');
  const what = purpose === 'enroll'
    ? `Added this phone to ${account} at ${claims.service_name}.`
    : `Registered ${account} at ${claims.service_name}.`;
  if (pending) {
    const code = await confirmationCode(hexToBytes(claims.challenge_id), record.public_key);
    showResult(what, 'The new key waits for confirmation.', code);
  } else {
    showResult(what, 'The page that asked is signing in.');
  }
}

/**
 * Deny, signed by a key made for this one answer (PROTOCOL.md §4): a
 * refusal identifies nobody, and should never wait on the phone's unlock.
 */
async function deny() {
  const key = await keystore.oneTimeKey();
  const body = await signAnswer('deny', current.decoded, { key: { privateKey: key.privateKey, publicKeyBytes: key.publicKey } });
  say('Sending your refusal…');
  await api('/api/authenticator/deny', body);
  showResult('Refused.', `${current.decoded.claims.service_name} is told that you denied the request.`);
}

/** The outcome; `code` is the §11 confirmation code of a pending key, computed here. */
function showResult(text, detail, code = null) {
  say('');
  $('result-text').textContent = text;
  $('result-detail').textContent = detail;
  $('confirm-block').hidden = !code;
  $('confirm-code').textContent = code ? `${code.slice(0, 3)} ${code.slice(3)}` : '';
  showNewKeys([]);
  // Opened from a login page's "approve in this browser" link, in a tab of
  // its own: that page is still open in the tab it came from.
  $('back-button').hidden = !openedFromPage;
  current = null;
  showCard('result');
  $('result-text').focus();
}

// ------------------------------------------------------------ the camera

async function startCamera() {
  say('Starting the camera…');
  $('scan-start').hidden = true;
  $('scanner').hidden = false;
  let last = '';
  try {
    stopScanning = await startScanner($('scan-video'), (text) => {
      try {
        readInput(text);
      } catch {
        // Some other QR code: say so once, and keep looking.
        if (text !== last) say('That QR code is not a Sesame sign-in. Scan the one on the login page.', 'bad');
        last = text;
        return false;
      }
      stopScanning = null;
      hideCamera();
      openRequest(text);
      return true;
    });
    say(''); // the frame's own caption says what to do
  } catch (error) {
    hideCamera();
    fail(error);
    $('token-input').focus();
  }
}

function stopCamera() {
  stopScanning?.();
  stopScanning = null;
  hideCamera();
}

function hideCamera() {
  $('scanner').hidden = true;
  $('scan-start').hidden = false;
}

// ------------------------------------------------------------ accounts

async function renderAccounts() {
  const records = await keystore.listAccounts();
  records.sort((a, b) => a.service_name.localeCompare(b.service_name) || a.origin.localeCompare(b.origin) ||
    a.account.localeCompare(b.account));
  const list = $('accounts-list');
  list.replaceChildren();
  for (const record of records) list.append(await accountItem(record));
  $('accounts-empty').hidden = records.length > 0;
  $('remove-confirm').hidden = true;
}

async function accountItem(record) {
  const item = document.createElement('li');
  item.dataset.account = record.account;
  item.dataset.origin = record.origin;
  const about = document.createElement('div');
  const notes = [`Added ${localDate(record.created_at)}`];
  if (!record.confirmed) notes.push('the server has not confirmed it');
  else if (record.key_state === 'pending') notes.push('needed confirmation on the page when added');
  about.append(
    line('name', record.account),
    line('detail', `${record.service_name} — ${record.origin}`),
    line('detail fingerprint', `Key ${fingerprint(await keyId(record.public_key))}`),
    line('detail', notes.join(' · ')),
  );
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'secondary';
  remove.dataset.testid = 'remove-account';
  remove.textContent = 'Remove';
  remove.setAttribute('aria-label', `Remove ${record.account} at ${record.service_name}`);
  remove.addEventListener('click', () => askRemove(record));
  item.append(about, remove);
  return item;
}

function line(className, text) {
  const span = document.createElement('span');
  span.className = className;
  span.textContent = text;
  return span;
}

function askRemove(record) {
  removing = record;
  $('remove-text').textContent = `Remove the key of ${record.account} at ${record.service_name} (${record.origin}) ` +
    'from this phone? The server keeps the account: you only lose this phone\'s way to log in to it. This cannot be undone.';
  $('remove-confirm').hidden = false;
  $('remove-no').focus();
}

async function confirmRemove() {
  const record = removing;
  removing = null;
  if (!record) return;
  await keystore.removeAccount(record);
  await renderAccounts();
  say(`Removed the key of ${record.account} at ${record.service_name} from this phone.`, 'ok');
  $('accounts-title').focus();
}

// ------------------------------------------------------------ about

const PROTECTION = {
  prf: 'Your keys are encrypted with your phone\'s unlock (WebAuthn PRF).',
  uv: 'Your phone\'s browser protects your keys; the unlock is checked by this app but does not encrypt them.',
};

async function renderAbout() {
  $('protection').textContent = PROTECTION[await keystore.protection()] ??
    'Your first approval sets up the phone\'s unlock (PIN, fingerprint or face); every approval needs it.';
  $('trust').textContent = `This app comes from ${location.origin} and trusts what that server sends it: it talks ` +
    'to no other server, and answers only its requests.';
  const persisted = await keystore.isPersisted();
  $('persistence').hidden = persisted === null;
  $('persistence').textContent = persisted
    ? 'The browser has promised to keep Sesame\'s storage.'
    : 'The browser may clear Sesame\'s storage when space runs low or when its site data is cleared; the keys would be lost with it.';
  const list = $('pins-list');
  list.replaceChildren();
  for (const pin of await keystore.listPins()) list.append(pinItem(pin));
  $('unpin-confirm').hidden = true;
}

function pinItem(pin) {
  const item = document.createElement('li');
  item.dataset.origin = pin.origin;
  const about = document.createElement('div');
  about.append(
    line('name', pin.origin),
    line('detail fingerprint', `Key ${fingerprint(pin.key_id)}`),
    line('detail', `Pinned ${localDate(pin.pinned_at)}`),
  );
  const forget = document.createElement('button');
  forget.type = 'button';
  forget.className = 'secondary';
  forget.dataset.testid = 'unpin';
  forget.textContent = 'Forget';
  forget.setAttribute('aria-label', `Forget the pinned key of ${pin.origin}`);
  forget.addEventListener('click', () => {
    unpinning = pin;
    $('unpin-text').textContent = `Forget the key pinned for ${pin.origin}? The next request from it pins whatever key ` +
      'the server shows then. Do this only if its operator told you the key changed.';
    $('unpin-confirm').hidden = false;
    $('unpin-no').focus();
  });
  item.append(about, forget);
  return item;
}

async function confirmUnpin() {
  const pin = unpinning;
  unpinning = null;
  if (!pin) return;
  await keystore.removePin(pin.origin);
  await renderAbout();
  say(`Forgot the key pinned for ${pin.origin}.`, 'ok');
  $('about-title').focus();
}

// ------------------------------------------------------------ start-up

function wire() {
  for (const tab of document.querySelectorAll('nav .tab')) {
    tab.addEventListener('click', () => {
      say('');
      showView(tab.dataset.view);
    });
  }
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const text = $('token-input').value;
    if (!text.trim()) {
      say('Paste the link or token from the login page first.', 'bad');
      $('token-input').focus();
      return;
    }
    openRequest(text);
  });
  $('scan-start').addEventListener('click', startCamera);
  $('scan-stop').addEventListener('click', () => {
    stopCamera();
    say('');
  });
  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(logIn);
  });
  $('register-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(register);
  });
  $('enroll-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(enroll);
  });
  $('deny-button').addEventListener('click', () => busy(deny));
  $('cancel-button').addEventListener('click', () => {
    backToStart();
    say('Nothing was answered. The page keeps waiting until its request expires.');
  });
  $('over-back').addEventListener('click', () => {
    backToStart();
    say('');
  });
  $('refusal-back').addEventListener('click', () => {
    backToStart();
    say('');
  });
  $('result-again').addEventListener('click', () => {
    backToStart();
    say('');
    $('token-input').focus();
  });
  // A tab that a link opened holds one page, so the app may close it; a
  // browser that refuses still leaves the person a sentence.
  $('back-button').addEventListener('click', () => {
    window.close();
    say('Switch back to the tab of the sign-in page: it has moved on by itself.');
  });
  $('remove-yes').addEventListener('click', () => confirmRemove().catch(fail));
  $('remove-no').addEventListener('click', () => {
    removing = null;
    $('remove-confirm').hidden = true;
  });
  $('unpin-yes').addEventListener('click', () => confirmUnpin().catch(fail));
  $('unpin-no').addEventListener('click', () => {
    unpinning = null;
    $('unpin-confirm').hidden = true;
  });
  // A camera left running in a hidden app is a camera nobody watches.
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) stopCamera();
  });
  window.addEventListener('online', () => checkServer());
  window.addEventListener('offline', () => showOnline());
  window.addEventListener('hashchange', () => {
    const text = takeFragment();
    if (text) openRequest(text);
  });
  keystore.onStorageLost(() => {
    say('Sesame\'s storage on this phone was cleared: its keys and pinned server keys are gone.', 'bad');
    backToStart();
  });
}

/**
 * The offline banner: the browser's word, corrected by the last call to the
 * server, since a phone can be "online" on a network that does not reach it.
 */
function showOnline(reached = reachable) {
  reachable = reached;
  $('offline').hidden = navigator.onLine && reachable;
}

/**
 * The token of a link `/app#<token>`, taken out of the address at once so
 * that it stays in no history entry.
 */
function takeFragment() {
  const text = location.hash.slice(1);
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  return text;
}

async function main() {
  const fromLink = takeFragment();
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/app/sw.js', { scope: '/app' })
      .catch((error) => console.warn('Sesame works online only: its service worker was refused.', error));
  }
  showOnline(true);
  const missing = await keystore.missingFeature();
  if (missing) {
    $('unsupported-text').textContent = missing;
    $('unsupported').hidden = false;
    for (const view of document.querySelectorAll('.view, nav')) view.hidden = true;
    return;
  }
  wire();
  if (fromLink) await openRequest(fromLink);
  else await checkServer();
}

/**
 * Whether the server answers now. An app that opened from its offline copy
 * while the server is down says so at once, not at the first answer.
 */
async function checkServer() {
  try {
    showOnline((await fetch('/.well-known/sesame', { cache: 'no-store' })).ok);
  } catch {
    showOnline(false);
  }
}

main().catch(fail);
