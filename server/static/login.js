// Sesame login page: follows the challenge's event stream, redraws the token
// and its QR code at each step, and turns a completed sign-in into a session.
// The enrollment page (data-mode="enroll") runs the same code, and when a new
// authenticator has answered it goes on to the page that confirms its key.
// Loaded from /static so the page's CSP can forbid inline scripts.
(function () {
  "use strict";

  var root = document.getElementById("login");
  if (!root || !root.dataset.eventsUrl) {
    return; // the signed-in page has nothing to follow
  }

  // An enrollment adds a key and opens no session: its page moves on to the
  // confirmation, and "Start again" asks the server for a fresh page.
  var enrolling = root.dataset.mode === "enroll";

  var els = {
    status: document.getElementById("status"),
    token: document.getElementById("token"),
    qr: document.getElementById("qr"),
    copy: document.getElementById("copy"),
    cancel: document.getElementById("cancel"),
    restart: document.getElementById("restart"),
    waiting: document.getElementById("waiting"),
    signedIn: document.getElementById("signed-in"),
    account: document.getElementById("account-name"),
    numberLine: document.getElementById("number-line"),
    number: document.getElementById("number"),
    sameDevice: document.getElementById("same-device"),
  };

  // A page shown for an OpenID Connect request goes back to the application
  // when its sign-in ends, whichever way it ends.
  var finishForm = document.getElementById("finish");
  if (finishForm) {
    finishForm.hidden = true;
  }

  // Both the cancel answer and the event stream report the end; the form
  // goes once, since the server hands the request back only once.
  var finishing = false;

  function finish() {
    if (finishForm && !finishing) {
      finishing = true;
      finishForm.submit();
    }
  }

  var current = {
    eventsUrl: root.dataset.eventsUrl,
    cancelUrl: root.dataset.cancelUrl,
    sessionUrl: root.dataset.sessionUrl,
  };
  var source = null;
  var finished = false;

  function setStatus(text, tone) {
    els.status.textContent = text;
    els.status.className = "status" + (tone ? " " + tone : "");
  }

  // The QR code holds the link that opens the web authenticator with the
  // token in its fragment (PROTOCOL.md §3.6), so that a phone's camera
  // offers to open it; the text stays the bare token, for pasting.
  function drawQr(token) {
    // Level M, so that a photo of a screen still scans; type 0 picks the
    // size.
    var qr = qrcode(0, "M");
    qr.addData(root.dataset.appLink + token);
    qr.make();
    els.qr.innerHTML = qr.createSvgTag({ cellSize: 4, margin: 16, scalable: true });
  }

  function showToken(text) {
    els.token.textContent = text;
    drawQr(text);
    if (els.sameDevice) {
      els.sameDevice.href = root.dataset.sameDeviceLink + text;
    }
  }

  // The number to type into the authenticator (PROTOCOL.md §14); a new
  // challenge has a new one, or none.
  function showNumber(number) {
    if (!els.numberLine) {
      return;
    }
    els.number.textContent = number ? String(number) : "";
    els.numberLine.hidden = !number;
  }

  var retryDelay = 1000;

  // A code that can no longer be answered must not look live. The stream
  // errors at once when the server goes away; a connection that dies
  // silently is noticed by its silence: while a sign-in waits, a token
  // comes at every rotation step, so a page that hears nothing for well
  // over the longest step it has seen has lost the server too. Until a
  // fresh token arrives, the QR code is hidden and the page says why.
  var lost = false;
  var watchdog = null;
  var lastToken = 0;
  var longestStep = 0;

  function quietLimit() {
    return longestStep ? Math.max(8000, 2.5 * longestStep) : 30000;
  }

  function listen() {
    clearTimeout(watchdog);
    if (!finished) {
      watchdog = setTimeout(function () {
        loseServer();
        follow();
      }, quietLimit());
    }
  }

  function hideCode() {
    els.qr.hidden = true;
    els.token.classList.add("spent");
  }

  function loseServer() {
    if (finished) {
      return;
    }
    lost = true;
    hideCode();
    setStatus("Lost the connection to the server. Reconnecting… The code is hidden until the server is back.", "bad");
  }

  function onToken(text) {
    var now = Date.now();
    if (lastToken && !lost) {
      longestStep = Math.max(longestStep, now - lastToken);
    }
    lastToken = now;
    showToken(text);
    if (lost) {
      lost = false;
      els.qr.hidden = false;
      els.token.classList.remove("spent");
    }
    listen();
  }

  function stop() {
    clearTimeout(watchdog);
    if (source) {
      source.close();
      source = null;
    }
  }

  function follow() {
    stop();
    finished = false;
    source = new EventSource(current.eventsUrl);
    source.addEventListener("token", function (e) {
      onToken(JSON.parse(e.data).token);
    });
    source.addEventListener("status", function (e) {
      retryDelay = 1000;
      // After a reconnection the server sends the status, then a fresh
      // token: the code shows again with that token (onToken).
      onStatus(JSON.parse(e.data));
      listen();
    });
    source.onerror = function () {
      // EventSource reconnects by itself after a dropped connection; the
      // server then sends the current state again. Once the sign-in is over
      // there is nothing to resume.
      if (finished) {
        stop();
        return;
      }
      loseServer();
      // An error answer closes the stream for good. A server that
      // restarted has forgotten a pending challenge, and its status URL
      // then says so: the page offers to start again. Otherwise (503 while
      // the server cannot deliver results) try again, backing off up to ten
      // seconds.
      if (source && source.readyState === EventSource.CLOSED) {
        stop();
        fetch(current.eventsUrl.replace(/\/events$/, ""), { credentials: "same-origin" })
          .then(function (response) {
            if (response.status === 404) {
              finished = true;
              offerRestart(
                enrolling
                  ? "The server no longer knows this request to add an authenticator. Start again."
                  : "The server no longer knows this sign-in request. Start again."
              );
            } else {
              retry();
            }
          })
          .catch(retry);
      }
    };
    listen();
  }

  function retry() {
    setTimeout(function () {
      if (!finished && !source) {
        follow();
      }
    }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 10000);
  }

  // The sign-in is over without a session: say why, and offer a new one.
  function offerRestart(message) {
    lost = false;
    els.qr.hidden = false;
    setStatus(message, "bad");
    els.cancel.hidden = true;
    els.restart.hidden = false;
    els.qr.classList.add("spent");
    els.token.classList.add("spent");
    showNumber(null);
  }

  function onStatus(view) {
    if (view.status !== "pending") {
      lost = false;
      els.qr.hidden = false;
    }
    switch (view.status) {
      case "pending":
        setStatus(view.message, "");
        return;
      case "completed":
        finished = true;
        stop();
        setStatus(view.message, "ok");
        if (enrolling) {
          window.location.assign(root.dataset.enrollUrl);
        } else if (finishForm) {
          finish();
        } else {
          redeem();
        }
        return;
      default: // denied, expired, cancelled
        finished = true;
        stop();
        if (finishForm && view.status !== "expired") {
          setStatus(view.message, "bad");
          finish();
          return;
        }
        offerRestart(view.message);
    }
  }

  function post(url) {
    return fetch(url, { method: "POST", credentials: "same-origin" }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) {
          throw new Error(body.message || "The request failed.");
        }
        return body;
      });
    });
  }

  function redeem() {
    post(current.sessionUrl)
      .then(function (session) {
        els.account.textContent = session.account;
        els.waiting.hidden = true;
        els.signedIn.hidden = false;
      })
      .catch(function (err) {
        setStatus(err.message, "bad");
      });
  }

  function restart() {
    if (enrolling) {
      if (root.dataset.restartUrl) {
        window.location.assign(root.dataset.restartUrl);
      } else {
        window.location.reload();
      }
      return;
    }
    if (finishForm) {
      // The authorization request is bound to this page's challenge: a new
      // one comes with a fresh load of the same request.
      window.location.reload();
      return;
    }
    post(root.dataset.challengesUrl)
      .then(function (created) {
        var id = created.challenge_id;
        current.eventsUrl = "/api/challenges/" + id + "/events";
        current.cancelUrl = "/api/challenges/" + id + "/cancel";
        current.sessionUrl = "/api/challenges/" + id + "/session";
        showToken(created.token);
        showNumber(created.number);
        els.qr.classList.remove("spent");
        els.token.classList.remove("spent");
        els.restart.hidden = true;
        els.cancel.hidden = false;
        setStatus("Scan the QR code or paste the token into your Sesame authenticator.", "");
        follow();
      })
      .catch(function (err) {
        setStatus(err.message, "bad");
      });
  }

  els.copy.addEventListener("click", function () {
    var text = els.token.textContent;
    if (navigator.clipboard) {
      navigator.clipboard.writeText(text).then(function () {
        els.copy.textContent = "Copied";
        setTimeout(function () { els.copy.textContent = "Copy token"; }, 1500);
      });
    }
  });
  els.cancel.addEventListener("click", function () {
    post(current.cancelUrl).then(onStatus).catch(function (err) {
      setStatus(err.message, "bad");
    });
  });
  els.restart.addEventListener("click", restart);
  // The server sends the token as text only; the first QR code is drawn
  // here, like every later one.
  drawQr(els.token.textContent);

  // Over HTTP/1.1 a browser keeps six connections to a server, and each
  // open login page holds one for its stream: a page in a background tab
  // lets its stream go, hides its code, and follows again when shown. Over
  // HTTP/2 or HTTP/3 every stream shares one connection, and nothing needs
  // to go.
  var navigation = performance.getEntriesByType ? performance.getEntriesByType("navigation")[0] : null;
  var multiplexed = Boolean(navigation && /^h[23]/.test(navigation.nextHopProtocol || ""));
  document.addEventListener("visibilitychange", function () {
    if (multiplexed || finished) {
      return;
    }
    if (document.hidden) {
      stop();
      lost = true;
      hideCode();
    } else if (!source) {
      follow();
    }
  });

  follow();
})();
