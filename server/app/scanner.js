// Camera QR scanning: the back camera into a <video>, a few frames a second
// read with the browser's BarcodeDetector where it has one for QR codes, else
// with the vendored jsQR (vendor/README.md), loaded only then.

const FRAME_INTERVAL_MS = 200; // five looks a second find a code fast enough
// The longest side each frame is scaled to before jsQR reads it, one size a
// frame in turn. jsQR's time grows with pixels, and whether it finds a code
// depends on the scale in ways no single size gets right (a login page filmed
// whole reads at 960 and 720 but not at 800 or at 1200), so frames cycle.
const SIDES = [960, 720, 1280];

/** A camera failure, with one sentence for the person. */
export class ScanError extends Error {}

/**
 * Starts the camera in `video` and calls `onText(text)` with the text of
 * each QR code seen. Scanning stops when `onText` returns true (it took the
 * code) or when the returned `stop` function is called.
 */
export async function startScanner(video, onText) {
  const stream = await openCamera();
  const decode = await decoder().catch((error) => {
    stopStream(stream);
    throw error;
  });
  video.srcObject = stream;
  try {
    await video.play();
  } catch {
    // A muted inline video plays on every browser that gave us a stream;
    // should one refuse, its frames are still readable.
  }
  let running = true;
  let timer = 0;
  const stop = () => {
    running = false;
    clearTimeout(timer);
    stopStream(stream);
    video.srcObject = null;
  };
  const look = async () => {
    if (!running) return;
    const text = video.readyState >= video.HAVE_CURRENT_DATA ? await decode(video).catch(() => null) : null;
    if (running && text && onText(text)) {
      stop();
      return;
    }
    if (running) timer = setTimeout(look, FRAME_INTERVAL_MS);
  };
  look();
  return stop;
}

async function openCamera() {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new ScanError('This browser cannot use the camera here. Paste the link or token instead.');
  }
  try {
    return await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
  } catch (error) {
    throw new ScanError(cameraSentence(error));
  }
}

function cameraSentence(error) {
  switch (error?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'The camera was not allowed. Allow it in the browser\'s settings, or paste the link or token instead.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No camera could be found on this phone. Paste the link or token instead.';
    case 'NotReadableError':
      return 'The camera is busy in another app. Close that app, or paste the link or token instead.';
    default:
      return 'The camera could not be started. Paste the link or token instead.';
  }
}

function stopStream(stream) {
  for (const track of stream.getTracks()) track.stop();
}

// A function from the video to the text of the QR code in its current frame,
// or null when it shows none.
async function decoder() {
  if (await hasQrDetector()) {
    const detector = new BarcodeDetector({ formats: ['qr_code'] });
    return async (video) => (await detector.detect(video))[0]?.rawValue ?? null;
  }
  const jsQR = await loadJsQR();
  const canvas = document.createElement('canvas');
  const context = canvas.getContext('2d', { willReadFrequently: true });
  let frames = 0;
  return async (video) => {
    const side = SIDES[frames++ % SIDES.length];
    const scale = Math.min(1, side / Math.max(video.videoWidth, video.videoHeight));
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    if (!canvas.width || !canvas.height) return null;
    context.drawImage(video, 0, 0, canvas.width, canvas.height);
    const frame = context.getImageData(0, 0, canvas.width, canvas.height);
    // Login pages draw dark modules on light: trying the inverse too would
    // double the work of every frame for codes no Sesame page shows.
    return jsQR(frame.data, frame.width, frame.height, { inversionAttempts: 'dontInvert' })?.data ?? null;
  };
}

async function hasQrDetector() {
  if (!('BarcodeDetector' in self)) return false;
  try {
    return (await BarcodeDetector.getSupportedFormats()).includes('qr_code');
  } catch {
    return false;
  }
}

// jsQR is a classic script that defines self.jsQR. A <script> element from
// our own origin is what the CSP (script-src 'self') allows.
let jsQRLoading = null;
function loadJsQR() {
  jsQRLoading ??= new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = '/app/vendor/jsQR.js';
    script.onload = () => resolve(self.jsQR);
    script.onerror = () => {
      jsQRLoading = null;
      reject(new ScanError('The QR code reader could not be loaded. Paste the link or token instead.'));
    };
    document.head.append(script);
  });
  return jsQRLoading;
}
