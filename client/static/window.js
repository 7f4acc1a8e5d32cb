// Sesame's window: talks to the local `sesame ui` process only. Every text
// that came from a server is set with textContent, never as HTML.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // Words for the errors a person meets most; others keep sesame's own line.
  const WORDS = {
    offline: 'The window has lost touch with sesame. Is "sesame ui" still running? Start it again and open the new address it prints.',
    no_session: 'This window is from an earlier run of sesame ui. Open the address it printed this time.',
    locked: 'Your keys are locked. Enter your passphrase first.',
    wrong_passphrase: 'That passphrase is not right. Try again.',
    no_qr_code: 'No Sesame QR code was found in that picture. Try a sharper, larger one, or paste the token instead.',
    bad_image: 'That file is not a picture the window can read. Use a PNG or JPEG screenshot or photo.',
    payload_too_large: 'That picture is too large. Use a screenshot or a smaller photo.',
    passphrase_mismatch: 'The two new passphrases are not the same. Type them again.',
    wrong_backup_passphrase: 'That is not the passphrase of this backup. Nothing was imported.',
    weak_passphrase: 'Use a longer backup passphrase: at least 12 characters, for instance four or five random words.',
    // The command line's words name commands; the window has buttons.
    local_account_exists: 'This device already has a key for that account. Log in with it instead.',
    unknown_account: 'The server no longer knows that account. Remove its key under "Your accounts".',
    bad_signature: 'The server no longer takes this device\'s key for that account: it was removed, or replaced by a ' +
      'key change on another device. Remove it under "Your accounts", then add this device again from the account ' +
      'page of a signed-in device ("Add another authenticator") or with a recovery link.',
    rekey_unsettled: 'The key change of an account is unsettled. Log in with that account once, then try again.',
    nothing_to_export: 'There are no keys to back up yet.',
    backup_passphrase_required: 'Type the backup\'s passphrase.',
    keyring_locked: 'This computer\'s keyring is locked. Unlock it (log in to your desktop session), then try again.',
    keyring_unavailable: 'This computer\'s keyring, which keeps the key to your keys, cannot be reached. ' +
      'Start sesame ui in your desktop session.',
    keyring_entry_missing: 'The key to your keys is missing from this computer\'s keyring: it was deleted, or the ' +
      'keystore was copied from another computer. Restore your keys from a backup into a new keystore.',
  };
  const words = (e) => {
    if (e.error === 'import_conflict' && e.conflicts) {
      return 'Nothing was imported: the backup and this device hold different keys for ' + e.conflicts +
        '. To take the backup\'s, tick "take the backup\'s" above and import again.' +
        (e.kept_newer ? ' This device\'s newer key of ' + e.kept_newer + ' stays either way: the backup\'s is ' +
          'older, and the server no longer takes it.' : '');
    }
    return WORDS[e.error] || e.message || 'Something went wrong.';
  };

  let current = null; // the request on screen: the token and who is asking
  let removing = null; // the account whose removal waits for confirmation

  async function api(path, body, picture) {
    const init = { credentials: 'same-origin', cache: 'no-store' };
    if (picture) {
      Object.assign(init, { method: 'POST', headers: { 'Content-Type': picture.type || 'application/octet-stream' }, body: picture });
    } else if (body !== undefined) {
      Object.assign(init, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (_) {
      throw { error: 'offline' };
    }
    let data;
    try {
      data = await response.json();
    } catch (_) {
      data = { error: 'bad_answer', message: 'sesame gave an answer the window cannot read.' };
    }
    if (!response.ok) throw data;
    return data;
  }

  function say(text, kind) {
    const box = $('message');
    box.textContent = text;
    box.className = 'message' + (kind ? ' ' + kind : '');
    box.hidden = !text;
  }

  // A message next to the form that caused it, where the person is
  // looking, rather than at the top of the window. Any other message goes:
  // it was about something done before.
  function sayAt(id, text, kind) {
    for (const other of document.querySelectorAll('.message')) {
      if (other.id !== id) other.hidden = true;
    }
    const box = $(id);
    box.textContent = text;
    box.className = 'message' + (kind ? ' ' + kind : '');
    box.hidden = !text;
  }

  function show(...ids) {
    for (const id of ['start', 'request', 'result', 'refusal']) $(id).hidden = !ids.includes(id);
  }

  async function busy(button, work) {
    if (button) button.disabled = true;
    try {
      return await work();
    } finally {
      if (button) button.disabled = false;
    }
  }

  // ---- state ------------------------------------------------------------

  async function refresh() {
    let status;
    try {
      status = await api('/api/status');
    } catch (e) {
      say(words(e), 'bad');
      return;
    }
    $('keystore').textContent = 'Keystore: ' + status.keystore;
    $('unlock').hidden = !status.locked;
    $('accounts').hidden = status.locked;
    $('backup').hidden = status.locked;
    $('passphrase').hidden = status.locked;
    if (status.locked) {
      show();
      sayAt('unlock-message', 'Your keys are locked. Enter your passphrase to begin.');
      $('unlock-passphrase').focus();
      return;
    }
    if (!current) show('start');
    const kept = {
      passphrase: ['Change your passphrase', 'Your keys are encrypted with your passphrase.'],
      system_keyring: ['Use a passphrase instead',
        'Your keys are encrypted with a key kept in this computer\'s keyring, so you type nothing. ' +
        'With a passphrase instead, you type it each time you open this window.'],
      plain: status.holds_keys
        ? ['Set a passphrase', 'Your keys are stored unencrypted on this device. A passphrase encrypts them.']
        : ['Set a passphrase', 'New keys are encrypted with a key kept in this computer\'s keyring, where it has one. ' +
          'A passphrase, typed each time you open this window, can encrypt them instead.'],
    }[status.protection] || ['Set a passphrase', ''];
    $('pass-title').textContent = kept[0];
    $('pass-intro').textContent = kept[1];
    $('pass-current-row').hidden = !status.has_passphrase;
    await loadAccounts();
  }

  $('unlock-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const field = $('unlock-passphrase');
    try {
      await busy(event.submitter, () => api('/api/unlock', { passphrase: field.value }));
      field.value = '';
      say('Unlocked. Your passphrase is not stored; you will be asked again next time.', 'ok');
      await refresh();
    } catch (e) {
      field.select();
      sayAt('unlock-message', words(e), 'bad');
    }
  });

  $('pass-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { current: $('pass-current').value || null, new: $('pass-new').value, repeat: $('pass-repeat').value };
    sayAt('pass-message', 'Saving the passphrase and encrypting your keys…');
    try {
      const answer = await busy(event.submitter, () => api('/api/passphrase', body));
      for (const id of ['pass-current', 'pass-new', 'pass-repeat']) $(id).value = '';
      await refresh();
      sayAt('pass-message', answer.message, 'ok');
    } catch (e) {
      sayAt('pass-message', words(e), 'bad');
    }
  });

  // ---- accounts -----------------------------------------------------------

  async function loadAccounts() {
    let groups;
    try {
      groups = await api('/api/accounts');
    } catch (e) {
      sayAt('accounts-message', words(e), 'bad');
      return;
    }
    const list = $('accounts-list');
    list.replaceChildren();
    $('accounts-empty').hidden = groups.length > 0;
    for (const group of groups) {
      const box = document.createElement('div');
      box.className = 'group';
      const title = document.createElement('h3');
      title.textContent = group.service_name + ' — ' + group.origin;
      const items = document.createElement('ul');
      for (const account of group.accounts) {
        const item = document.createElement('li');
        item.dataset.account = account.name;
        item.dataset.service = group.service_name;
        const about = document.createElement('span');
        const name = document.createElement('span');
        name.className = 'name';
        name.textContent = account.name;
        const when = document.createElement('span');
        when.className = 'muted';
        when.textContent = ' · created ' + account.created + ' · last used ' + (account.last_used || 'never') +
          (account.confirmed ? '' : ' · not confirmed by the server') +
          (account.rekey_pending ? ' · key change unsettled: the next sign-in settles it' : '');
        about.append(name, when);
        const remove = document.createElement('button');
        remove.type = 'button';
        remove.className = 'secondary remove';
        remove.textContent = 'Remove';
        remove.addEventListener('click', () => askRemove(group, account));
        item.append(about, remove);
        items.append(item);
      }
      box.append(title, items);
      list.append(box);
    }
  }

  function askRemove(group, account) {
    removing = { origin: group.origin, service_id: group.service_id, name: account.name };
    $('remove-text').textContent = 'Remove the key of ' + account.name + ' at ' + group.service_name + ' (' + group.origin +
      ') from this device? The server keeps the account: you only lose the key, and with it the way to log in to ' +
      account.name + ' from here. This cannot be undone.';
    $('remove-confirm').hidden = false;
    $('remove-yes').focus();
  }

  $('remove-no').addEventListener('click', () => {
    removing = null;
    $('remove-confirm').hidden = true;
  });

  $('remove-yes').addEventListener('click', async (event) => {
    if (!removing) return;
    try {
      const answer = await busy(event.target, () => api('/api/accounts/remove', removing));
      sayAt('accounts-message', answer.message, 'ok');
    } catch (e) {
      sayAt('accounts-message', words(e), 'bad');
    }
    removing = null;
    $('remove-confirm').hidden = true;
    await loadAccounts();
  });

  // ---- three ways in --------------------------------------------------------

  async function lookUp(token) {
    sayAt('start-message', 'Checking the token with the server…');
    try {
      const request = await api('/api/request', { token });
      sayAt('start-message', '');
      showRequest(request);
    } catch (e) {
      if (e.error === 'pinned_key_changed') {
        sayAt('start-message', '');
        $('refusal-text').textContent = e.message;
        show('refusal');
      } else {
        sayAt('start-message', words(e), 'bad');
      }
    }
  }

  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('token-input').value.trim();
    if (!token) {
      sayAt('start-message', 'Paste the token from the login page first.', 'bad');
      return;
    }
    busy(event.submitter, () => lookUp(token));
  });

  async function readPicture(file) {
    if (!file || !/^image\//.test(file.type)) {
      sayAt('start-message', WORDS.bad_image, 'bad');
      return;
    }
    sayAt('start-message', 'Looking for the QR code in the picture…');
    try {
      const { token } = await api('/api/scan', undefined, file);
      $('token-input').value = token;
      await lookUp(token);
    } catch (e) {
      sayAt('start-message', words(e), 'bad');
    }
  }

  document.addEventListener('paste', (event) => {
    if ($('start').hidden) return;
    const files = [...(event.clipboardData?.files || [])].filter((f) => f.type.startsWith('image/'));
    if (files.length) {
      event.preventDefault();
      readPicture(files[0]);
    }
  });
  const drop = $('drop');
  drop.addEventListener('dragover', (event) => {
    event.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('over');
    readPicture(event.dataTransfer?.files?.[0]);
  });
  $('picture').addEventListener('change', (event) => {
    readPicture(event.target.files[0]);
    event.target.value = '';
  });

  // The camera: frames go to the local sesame process, which decodes them
  // with the same decoder as `sesame scan`. A few frames a second is plenty.
  let stream = null;

  function stopCamera() {
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
    $('camera').hidden = true;
    $('camera-start').hidden = false;
  }

  async function scanFrames(video) {
    const canvas = document.createElement('canvas');
    while (stream) {
      if (video.videoWidth) {
        const scale = Math.min(1, 1280 / video.videoWidth);
        canvas.width = Math.round(video.videoWidth * scale);
        canvas.height = Math.round(video.videoHeight * scale);
        canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
        const frame = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
        try {
          const { token } = await api('/api/scan', undefined, frame);
          stopCamera();
          $('token-input').value = token;
          await lookUp(token);
          return;
        } catch (e) {
          if (e.error !== 'no_qr_code') {
            stopCamera();
            sayAt('start-message', words(e), 'bad');
            return;
          }
        }
      }
      await sleep(250);
    }
  }

  $('camera-start').addEventListener('click', async () => {
    if (!navigator.mediaDevices?.getUserMedia) {
      sayAt('start-message', 'This browser cannot use a camera here. Paste the token or a screenshot instead.', 'bad');
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
    } catch (e) {
      stream = null;
      sayAt('start-message', e.name === 'NotAllowedError'
        ? 'The camera was not allowed. Allow it in the browser, or paste the token or a screenshot instead.'
        : 'No camera could be opened. Paste the token or a screenshot instead.', 'bad');
      return;
    }
    const video = $('camera-video');
    video.srcObject = stream;
    $('camera').hidden = false;
    $('camera-start').hidden = true;
    sayAt('start-message', 'Looking for a QR code…');
    try {
      await video.play();
    } catch (_) { /* a muted inline video plays; the frames are read anyway */ }
    scanFrames(video);
  });
  $('camera-stop').addEventListener('click', () => {
    stopCamera();
    sayAt('start-message', '');
  });

  // ---- who is asking, and the answer ----------------------------------------

  function showRequest(request) {
    current = request;
    const enrolling = request.purpose === 'enroll';
    $('req-title').firstChild.textContent = enrolling ? 'Add this device to an account at ' : 'Sign in to ';
    $('req-service').textContent = request.service_name;
    $('req-login').hidden = enrolling;
    $('register-form').hidden = enrolling;
    $('enroll-form').hidden = !enrolling;
    $('enroll-account').textContent = request.enroll_account || '';
    $('enroll-label').value = '';
    $('req-rekey').checked = false;
    // The number comes from the page that is signing in, never from here
    // (PROTOCOL.md §14): the box starts empty.
    $('req-number-box').hidden = !request.number_matching;
    $('req-number').value = '';
    $('req-origin').textContent = request.origin;
    $('req-browser').textContent = request.user_agent;
    $('req-ip').textContent = request.ip;
    $('req-when').textContent = request.requested_at + ' (' + request.requested_ago + ')';
    $('req-expires').textContent = request.expires;
    const pin = $('req-pin');
    if (request.pin.first_seen) {
      pin.className = 'pin new';
      pin.textContent = 'New server: this is the first time you use ' + request.origin +
        '. Its key (' + request.pin.key_id + ') is now remembered, and a different key will be refused from now on.';
    } else {
      pin.className = 'pin known';
      pin.textContent = 'Known server: its key matches the one remembered on ' + request.pin.pinned_at + '.';
    }
    const buttons = $('req-accounts');
    buttons.replaceChildren();
    for (const name of request.accounts) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'login';
      button.dataset.account = name;
      button.textContent = 'Log in as ' + name;
      button.addEventListener('click', () =>
        answer(button, '/api/login', {
          token: current.token, account: name, rekey: $('req-rekey').checked, number: typedNumber(),
        }));
      buttons.append(button);
    }
    $('req-no-accounts').hidden = request.accounts.length > 0;
    $('register-name').value = '';
    $('request-error').hidden = true;
    show('request');
    (enrolling ? $('enroll-submit') : buttons.firstElementChild || $('register-name')).focus();
  }

  // What the person typed as the page's number, or null when not asked.
  function typedNumber() {
    return current && current.number_matching ? $('req-number').value.trim() : null;
  }

  async function answer(button, path, body) {
    $('request-error').hidden = true;
    try {
      const done = await busy(button, () => api(path, body));
      const [first, ...rest] = done.message.split('\n');
      $('result-text').textContent = first;
      $('result-text').className = 'status ' + (path === '/api/deny' ? 'bad' : 'ok');
      $('result-detail').textContent = rest.join(' ');
      // A key that waits for confirmation: the code to compare, large.
      const code = done.result && done.result.confirmation_code;
      $('result-code').textContent = code ? 'Code: ' + code.slice(0, 3) + ' ' + code.slice(3) : '';
      $('result-code').hidden = !code;
      // Keys that joined the account since this authenticator last signed
      // in: each one a warning of its own, above the Done button.
      const notices = $('result-notices');
      notices.replaceChildren(...(done.notices || []).map((text) => {
        const item = document.createElement('li');
        item.textContent = text;
        return item;
      }));
      notices.hidden = !notices.childElementCount;
      current = null;
      $('token-input').value = '';
      show('result');
      await loadAccounts();
    } catch (e) {
      const box = $('request-error');
      box.textContent = words(e);
      box.hidden = false;
      if (e.error === 'locked') await refresh();
    }
  }

  $('register-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const name = $('register-name').value.trim();
    if (!name) {
      $('request-error').textContent = 'Choose a name for the new account.';
      $('request-error').hidden = false;
      return;
    }
    answer(event.submitter, '/api/register', { token: current.token, name, number: typedNumber() });
  });
  $('enroll-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const label = $('enroll-label').value.trim();
    answer(event.submitter, '/api/enroll', { token: current.token, label: label || null });
  });
  $('deny').addEventListener('click', (event) => answer(event.target, '/api/deny', { token: current.token }));

  // ---- backups ----------------------------------------------------------------

  $('export-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { passphrase: $('export-pass').value, repeat: $('export-repeat').value };
    sayAt('export-message', 'Encrypting the backup…');
    await busy(event.submitter, async () => {
      let response;
      try {
        response = await fetch('/api/export', {
          method: 'POST', credentials: 'same-origin', cache: 'no-store',
          headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
        });
      } catch (_) {
        sayAt('export-message', WORDS.offline, 'bad');
        return;
      }
      if (!response.ok) {
        let e = {};
        try { e = await response.json(); } catch (_) { /* not JSON */ }
        sayAt('export-message', words(e), 'bad');
        return;
      }
      const name = (/filename="([^"]+)"/.exec(response.headers.get('Content-Disposition') || '') || [])[1];
      const url = URL.createObjectURL(await response.blob());
      const link = document.createElement('a');
      link.href = url;
      link.download = name || 'sesame-backup.age';
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      $('export-pass').value = '';
      $('export-repeat').value = '';
      sayAt('export-message', 'Saved ' + link.download + '. Keep the backup passphrase apart from the file.', 'ok');
    });
  });

  $('import-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const file = $('import-file').files[0];
    if (!file) {
      sayAt('import-message', 'Choose the backup file first.', 'bad');
      return;
    }
    sayAt('import-message', 'Importing the backup…');
    await busy(event.submitter, async () => {
      let response;
      try {
        response = await fetch('/api/import', {
          method: 'POST', credentials: 'same-origin', cache: 'no-store',
          headers: {
            'Content-Type': 'application/octet-stream',
            // Base64 of its UTF-8 bytes: a header carries no other text.
            'X-Sesame-Backup-Passphrase': btoa(String.fromCharCode(...new TextEncoder().encode($('import-pass').value))),
            'X-Sesame-Replace': $('import-replace').checked ? 'true' : 'false',
          },
          body: file,
        });
      } catch (_) {
        sayAt('import-message', WORDS.offline, 'bad');
        return;
      }
      let data = {};
      try { data = await response.json(); } catch (_) { /* not JSON */ }
      if (!response.ok) {
        sayAt('import-message', words(data), 'bad');
        return;
      }
      $('import-pass').value = '';
      $('import-file').value = '';
      sayAt('import-message', data.message, 'ok');
      await loadAccounts();
    });
  });

  function backToStart() {
    current = null;
    say('');
    show('start');
  }
  $('cancel').addEventListener('click', () => {
    backToStart();
    sayAt('start-message', 'Nothing was answered. The login page keeps waiting until its request expires.');
  });
  $('result-again').addEventListener('click', backToStart);
  $('refusal-back').addEventListener('click', backToStart);

  refresh();
})();
