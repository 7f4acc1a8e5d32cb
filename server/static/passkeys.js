// Passkeys (WebAuthn) on Sesame's pages, beside the QR sign-in: signing in
// with one (a button, and the browser's autofill where it offers passkeys
// there: conditional UI), creating an account with one, and adding one to
// an account on the account page. Loaded from /static so the page's CSP can
// forbid inline scripts.
(function () {
  "use strict";

  if (!window.PublicKeyCredential || !navigator.credentials) {
    return; // no WebAuthn here: the page stays as it is, QR sign-in only
  }

  // Binary members travel as base64url, as the server reads and writes them.
  function toBuffer(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) {
      b64 += "=";
    }
    var bin = atob(b64);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      bytes[i] = bin.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toText(buffer) {
    if (!buffer) {
      return null;
    }
    var bytes = new Uint8Array(buffer);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) {
      bin += String.fromCharCode(bytes[i]);
    }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // Members the server leaves empty (null) are left out: the browser takes
  // a missing member for its default, and refuses some nulls.
  function withoutNulls(value) {
    if (Array.isArray(value)) {
      return value.map(withoutNulls);
    }
    if (value && typeof value === "object") {
      var out = {};
      Object.keys(value).forEach(function (key) {
        if (value[key] !== null) {
          out[key] = withoutNulls(value[key]);
        }
      });
      return out;
    }
    return value;
  }

  function requestOptions(options) {
    var publicKey = withoutNulls(options.publicKey);
    publicKey.challenge = toBuffer(publicKey.challenge);
    (publicKey.allowCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return publicKey;
  }

  function creationOptions(options) {
    var publicKey = withoutNulls(options.publicKey);
    publicKey.challenge = toBuffer(publicKey.challenge);
    publicKey.user.id = toBuffer(publicKey.user.id);
    (publicKey.excludeCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return publicKey;
  }

  function assertionJson(credential) {
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      extensions: {},
      response: {
        authenticatorData: toText(credential.response.authenticatorData),
        clientDataJSON: toText(credential.response.clientDataJSON),
        signature: toText(credential.response.signature),
        userHandle: toText(credential.response.userHandle),
      },
    };
  }

  function attestationJson(credential) {
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      extensions: {},
      response: {
        attestationObject: toText(credential.response.attestationObject),
        clientDataJSON: toText(credential.response.clientDataJSON),
      },
    };
  }

  // A JSON POST; resolves with the body, rejects with the server's
  // message (and its code as `.code`).
  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    }).then(function (response) {
      return response.json().then(function (json) {
        if (!response.ok) {
          var err = new Error(json.message || "the server refused");
          err.code = json.error;
          throw err;
        }
        return json;
      });
    });
  }

  // What a person is told when the browser's own dialog ends without a
  // passkey.
  function browserError(err) {
    if (err && err.name === "NotAllowedError") {
      return "No passkey was used. Try again, or use the QR code.";
    }
    if (err && err.name === "InvalidStateError") {
      return "This authenticator already holds a passkey for this account.";
    }
    return (err && err.message) || "The passkey did not work.";
  }

  var login = document.getElementById("login");
  var box = document.getElementById("passkeys");
  if (login && box && login.dataset.serviceId) {
    loginPage(login, box);
  }
  var account = document.getElementById("passkey-add");
  if (account) {
    accountPage(account);
  }

  function loginPage(root, box) {
    var base = "/api/services/" + root.dataset.serviceId + "/passkeys/";
    var status = document.getElementById("passkey-status");
    var nameField = document.getElementById("passkey-name");
    var conditional = null; // the AbortController of the autofill request

    function say(text, tone) {
      status.textContent = text;
      status.className = "status" + (tone ? " " + tone : "");
      status.hidden = !text;
    }

    // Signed in: an authorization request goes on at the application's
    // request (which now finds the session, fresh); a login page shows
    // who is signed in.
    function signedIn() {
      if (root.dataset.finishUrl) {
        var url = new URL(window.location.href);
        var prompt = (url.searchParams.get("prompt") || "").split(" ").filter(function (p) {
          return p && p !== "login";
        });
        if (prompt.length) {
          url.searchParams.set("prompt", prompt.join(" "));
        } else {
          url.searchParams.delete("prompt");
        }
        if (url.searchParams.get("max_age") === "0") {
          url.searchParams.delete("max_age");
        }
        window.location.replace(url.toString());
      } else {
        window.location.reload();
      }
    }

    function finishSignIn(started, credential) {
      say("Checking the passkey…");
      return post(base + "sign-in/finish", { ceremony: started.ceremony, credential: assertionJson(credential) })
        .then(signedIn);
    }

    function offerAutofill(started) {
      if (!PublicKeyCredential.isConditionalMediationAvailable) {
        return;
      }
      PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
        if (!available) {
          return;
        }
        conditional = new AbortController();
        navigator.credentials
          .get({ publicKey: requestOptions(started.options), mediation: "conditional", signal: conditional.signal })
          .then(function (credential) {
            return finishSignIn(started, credential);
          })
          .catch(function (err) {
            if (err && err.name !== "AbortError") {
              say(err.code ? err.message : browserError(err), "error");
            }
          });
      });
    }

    function stopAutofill() {
      if (conditional) {
        conditional.abort();
        conditional = null;
      }
    }

    // The page asks once whether the service takes passkeys, with a
    // ceremony the autofill can use at once.
    post(base + "sign-in/start")
      .then(function (started) {
        box.hidden = false;
        root.dataset.passkeys = started.sesame_keys ? "both" : "only";
        if (!started.sesame_keys) {
          var waiting = document.getElementById("waiting");
          if (waiting) {
            waiting.hidden = true;
          }
        }
        offerAutofill(started);
      })
      .catch(function () {
        box.hidden = true; // passkeys_not_allowed, or nothing to offer
        root.dataset.passkeys = "off";
      });

    document.getElementById("passkey-sign-in").addEventListener("click", function () {
      stopAutofill();
      say("Choose a passkey in your browser's dialog.");
      post(base + "sign-in/start")
        .then(function (started) {
          return navigator.credentials.get({ publicKey: requestOptions(started.options) }).then(function (credential) {
            return finishSignIn(started, credential);
          });
        })
        .catch(function (err) {
          say(err.code ? err.message : browserError(err), "error");
        });
    });

    document.getElementById("passkey-register").addEventListener("click", function () {
      var name = nameField.value.trim();
      if (!name) {
        say("Type the account name you want, then create the account.", "error");
        nameField.focus();
        return;
      }
      stopAutofill();
      say("Create the passkey in your browser's dialog.");
      post(base + "register/start", { account: name })
        .then(function (started) {
          return navigator.credentials.create({ publicKey: creationOptions(started.options) }).then(function (credential) {
            say("Checking the passkey…");
            return post(base + "register/finish", {
              ceremony: started.ceremony,
              credential: attestationJson(credential),
            });
          });
        })
        .then(signedIn)
        .catch(function (err) {
          say(err.code ? err.message : browserError(err), "error");
        });
    });
  }

  function accountPage(form) {
    var base = "/api/services/" + form.dataset.serviceId + "/passkeys/";
    var status = document.getElementById("passkey-add-status");
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var label = document.getElementById("passkey-label").value.trim();
      status.textContent = "Create the passkey in your browser's dialog.";
      status.className = "status";
      post(base + "add/start", { label: label || null })
        .then(function (started) {
          return navigator.credentials.create({ publicKey: creationOptions(started.options) }).then(function (credential) {
            return post(base + "add/finish", { ceremony: started.ceremony, credential: attestationJson(credential) });
          });
        })
        .then(function () {
          window.location.assign(window.location.pathname + "?done=passkey_added");
        })
        .catch(function (err) {
          status.textContent = err.code ? err.message : browserError(err);
          status.className = "status error";
        });
    });
  }
})();
