// Errors of the Sesame protocol: one code per failure (docs/PROTOCOL.md §7),
// each with a sentence a person can act on.

const MESSAGES = {
  not_a_token: 'This is not a Sesame sign-in code. Copy the whole code, or scan the QR code again.',
  token_too_long: 'This is too long to be a Sesame sign-in code.',
  bad_link: 'This is not a Sesame sign-in link. It must be the server\'s address, then /app#, then the code.',
  link_origin_mismatch:
    'The link\'s address is not the server the sign-in comes from. Someone may be passing on another site\'s sign-in.',
  bad_encoding: 'The sign-in code is damaged: it has characters that do not belong in it. Copy it again.',
  truncated: 'The sign-in code is cut short. Copy the whole code, or scan it again.',
  trailing_bytes: 'The sign-in code has extra characters at its end. Copy it again.',
  unsupported_version: 'This sign-in code is for another version of Sesame.',
  invalid_origin: 'The sign-in code names a server address that is not valid.',
  invalid_service_name: 'The sign-in code names a service whose name is not valid.',
  invalid_rotation: 'The sign-in code is not valid: its refresh interval is out of range.',
  lifetime_too_long: 'The sign-in code is not valid: its lifetime is out of range.',
  unknown_signing_key: 'The server signed this with a key other than the one saved for it. Its key may have changed.',
  bad_token_signature: 'The sign-in code is not signed by the server it names. It may have been altered.',
  wrong_origin: 'The sign-in code is for another server.',
  token_expired: 'This sign-in request has expired. Start again on the page that is signing in.',
  token_not_yet_valid: 'This sign-in request is dated in the future. Check the clock of this device.',
  stale_code: 'This sign-in code is too old. Scan the QR code again.',
  bad_code: 'The sign-in code is not genuine. Scan the QR code again.',
  invalid_account_name:
    'The account name must be 1 to 64 bytes of text, without control characters or spaces at its ends.',
  invalid_public_key: 'The public key is not valid.',
  weak_public_key: 'The public key is weak and cannot be used.',
  invalid_signature_encoding: 'The signature is not valid.',
  bad_signature: 'The signature does not match.',
  invalid_key_label:
    'The device name must be 1 to 64 bytes of text, without control characters or spaces at its ends.',
  invalid_number: 'The number must be the two-digit number shown on the page that is signing in (10 to 99).',
  number_required: 'Type the number shown on the page that is signing in.',
  unexpected_number: 'This sign-in does not use a number.',
  wrong_number: 'The number did not match the one on the page that is signing in. Start again.',
  unknown_challenge: 'The server does not know this sign-in request.',
  unknown_service: 'The server does not know this service.',
  unknown_account: 'The service has no such account.',
  account_exists: 'That account name is taken. Choose another.',
  registration_closed: 'This service does not take new accounts here.',
  key_registered: 'This key is already registered at the service.',
  key_pending: 'This key still waits for confirmation on the page that added it.',
  wrong_purpose: 'This request is not for that kind of answer.',
  wrong_account: 'This request is for another account.',
  challenge_used: 'This sign-in request has already been answered.',
  challenge_expired: 'This sign-in request has expired. Start again on the page that is signing in.',
  invalid_json: 'The server could not read the request.',
  invalid_body: 'The server could not read the request.',
  unsupported_media_type: 'The server could not read the request.',
  body_too_large: 'The request is too large.',
  rate_limited: 'Too many requests. Wait a moment and try again.',
  not_found: 'The server has no such page.',
  method_not_allowed: 'The server does not take this request.',
  unavailable: 'The server is unavailable. Try again in a moment.',
  too_many_connections: 'The server is busy. Try again in a moment.',
  internal: 'The server failed. Nothing was changed.',
};

/**
 * The sentence for a person that goes with a §7 error code, also for codes
 * that come back from the server. Unknown codes get a generic sentence.
 * @param {string} code
 * @returns {string}
 */
export function errorMessage(code) {
  return MESSAGES[code] ?? `The request failed (${code}).`;
}

/** A protocol failure: `.code` is the §7 code, `.message` is for a person. */
export class ProtocolError extends Error {
  /**
   * @param {string} code a §7 error code
   * @param {string} [message] defaults to the sentence for `code`
   */
  constructor(code, message = errorMessage(code)) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
  }
}
