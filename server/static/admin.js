// Sesame admin pages that wait for an authenticator (signing in, adding an
// authenticator): follow the challenge's event stream, redraw the token and
// its QR code at each step, and continue the page's form as soon as the
// challenge ends, so that the result shows without pressing Continue.
// Loaded from /static so the page's CSP can forbid inline scripts.
(function () {
  "use strict";

  var root = document.getElementById("waiting");
  if (!root || !root.dataset.eventsUrl) {
    return;
  }
  var token = document.getElementById("token");
  var qr = document.getElementById("qr");
  var form = document.getElementById("continue");
  var source = new EventSource(root.dataset.eventsUrl);

  source.addEventListener("token", function (e) {
    var text = JSON.parse(e.data).token;
    token.textContent = text;
    // The QR code holds the link that opens the web authenticator with the
    // token (PROTOCOL.md §3.6); the text stays the bare token, for pasting.
    var code = qrcode(0, "M");
    code.addData(root.dataset.appLink + text);
    code.make();
    qr.innerHTML = code.createSvgTag({ cellSize: 4, margin: 16, scalable: true });
  });
  source.addEventListener("status", function (e) {
    if (JSON.parse(e.data).status !== "pending") {
      // The form's handler shows what happened: a session, the new key to
      // confirm, or why nothing was added.
      source.close();
      form.submit();
    }
  });
})();
