// Sesame's service worker: keeps a copy of the app's own files so that the
// app opens without a connection. It serves those files from its copy first
// and refreshes the copy from the network behind them, so a new version of
// the app is used from the next start on. It touches nothing else: API
// answers and /.well-known/sesame always go to the network, never to a cache.
//
// Registered from /app/app.js with scope "/app", which is wider than this
// file's folder (/app/), so the server sends `Service-Worker-Allowed: /app`
// with this file.
'use strict';

// Change the name when the list changes, so that old copies are dropped.
const CACHE = 'sesame-app-v1';
const FILES = [
  '/app',
  '/app/app.css',
  '/app/app.js',
  '/app/keystore.js',
  '/app/protocol.js',
  '/app/protocol-ed25519.js',
  '/app/protocol-error.js',
  '/app/protocol-names.js',
  '/app/scanner.js',
  '/app/vendor/jsQR.js',
  '/app/manifest.webmanifest',
  '/app/icon.svg',
  '/app/icon-192.png',
  '/app/icon-512.png',
];

self.addEventListener('install', (event) => {
  // 'reload': the copy comes from the server, not from the HTTP cache.
  const requests = FILES.map((file) => new Request(file, { cache: 'reload' }));
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(requests)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name !== CACHE && name.startsWith('sesame-app-')) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const key = cacheKey(event.request);
  if (key) event.respondWith(fromCopyThenRefresh(event, key));
});

// The app file a request is for, or null for anything else. The page is
// asked for as "/app" with its token in the fragment, which never reaches
// here; a query string does not change the page.
function cacheKey(request) {
  if (request.method !== 'GET') return null;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return null;
  if (url.pathname === '/app') return '/app';
  return !url.search && FILES.includes(url.pathname) ? url.pathname : null;
}

async function fromCopyThenRefresh(event, key) {
  const cache = await caches.open(CACHE);
  const copy = await cache.match(key);
  const fresh = fetch(key, { cache: 'no-cache' }).then(async (response) => {
    // A redirected answer cannot stand for a navigation later: keep the copy.
    if (response.ok && !response.redirected) await cache.put(key, response.clone());
    return response;
  });
  if (copy) {
    event.waitUntil(fresh.catch(() => undefined)); // offline: the copy is all there is
    return copy;
  }
  return fresh;
}
