/**
 * What travels inside an MLS application message: a small versioned JSON envelope, so that new
 * content types (reactions, receipts, call signalling, …) can come later without breaking old
 * clients, which show them as unsupported instead of failing.
 */
export interface Envelope {
  /** Envelope format version. */
  v: 1;
  /** Content type; clients ignore types they do not know. */
  type: string;
  /** Random id chosen by the sender, for deduplication and references. */
  id: string;
  /** Sender's clock when sent, ISO 8601. */
  sentAt: string;
  /** For `type: 'text'`. */
  text?: string;
}

/** Thrown for application messages that are not a valid envelope. */
export class InvalidEnvelopeError extends Error {}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** A text message envelope. */
export function textEnvelope(text: string, now = new Date()): Envelope {
  return { v: 1, type: 'text', id: crypto.randomUUID(), sentAt: now.toISOString(), text };
}

/** Envelope to plaintext bytes for MLS. */
export function encodeEnvelope(envelope: Envelope): Uint8Array {
  return encoder.encode(JSON.stringify(envelope));
}

/** Plaintext bytes from MLS to an envelope; throws InvalidEnvelopeError if they are not one. */
export function decodeEnvelope(plaintext: Uint8Array): Envelope {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(plaintext));
  } catch {
    throw new InvalidEnvelopeError('The message is not a Parley envelope');
  }
  if (
    typeof value !== 'object' ||
    value === null ||
    !('v' in value) ||
    value.v !== 1 ||
    !('type' in value) ||
    typeof value.type !== 'string' ||
    !('id' in value) ||
    typeof value.id !== 'string' ||
    !('sentAt' in value) ||
    typeof value.sentAt !== 'string'
  ) {
    throw new InvalidEnvelopeError('The message is not a version 1 Parley envelope');
  }
  const text = 'text' in value && typeof value.text === 'string' ? value.text : undefined;
  return {
    v: 1,
    type: value.type,
    id: value.id,
    sentAt: value.sentAt,
    ...(text === undefined ? {} : { text }),
  };
}
