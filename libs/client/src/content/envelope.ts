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
  /** For `type: 'metadata'`: the conversation's whole metadata as the sender sets it. */
  metadata?: EnvelopeMetadataFields;
  /** For `type: 'receipt'`: the sender's device has read the log up to this seq. */
  seq?: number;
  /** For `type: 'timer'`: the conversation's message timer from this entry on, seconds (0 = off). */
  seconds?: number;
  /** For `type: 'call-signal'`: the call it belongs to. */
  callId?: string;
  /** For `type: 'call-signal'`: the one device it is for; every other device ignores it. */
  to?: string;
  /** For `type: 'call-signal'`: SDP offer or answer, or an ICE candidate. */
  kind?: CallSignalKind;
  /** For `type: 'call-signal'`: the SDP, or the ICE candidate as JSON (the app's format). */
  payload?: string;
}

/** What a call signal carries. */
export type CallSignalKind = 'offer' | 'answer' | 'candidate';

const CALL_SIGNAL_KINDS: readonly string[] = ['offer', 'answer', 'candidate'];

/**
 * A conversation's metadata inside an envelope: every field, so that the newest entry alone says
 * it all (no merging of partial updates). `basedOn` marks a re-send of the metadata in force at
 * that log position (after an Add, for the joiners): members who already know a newer one
 * ignore it.
 */
export interface EnvelopeMetadataFields {
  name: string | null;
  description: string | null;
  /** Small image bytes, base64. */
  avatar: string | null;
  basedOn?: number;
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
  const metadata = 'metadata' in value ? readMetadata(value.metadata) : undefined;
  const seconds =
    'seconds' in value && Number.isSafeInteger(value.seconds) && (value.seconds as number) >= 0
      ? (value.seconds as number)
      : undefined;
  const seq =
    'seq' in value && Number.isSafeInteger(value.seq) && (value.seq as number) >= 0
      ? (value.seq as number)
      : undefined;
  const signal = value.type === 'call-signal' ? readCallSignal(value) : undefined;
  return {
    v: 1,
    type: value.type,
    id: value.id,
    sentAt: value.sentAt,
    ...(text === undefined ? {} : { text }),
    ...(metadata === undefined ? {} : { metadata }),
    ...(seq === undefined ? {} : { seq }),
    ...(seconds === undefined ? {} : { seconds }),
    ...(signal === undefined ? {} : signal),
  };
}

/** The fields of a call signal if all are well formed, else undefined (the signal is dropped). */
function readCallSignal(
  value: object,
): { callId: string; to: string; kind: CallSignalKind; payload: string } | undefined {
  const fields = value as Record<string, unknown>;
  const { callId, to, kind, payload } = fields;
  if (
    typeof callId !== 'string' ||
    typeof to !== 'string' ||
    typeof kind !== 'string' ||
    !CALL_SIGNAL_KINDS.includes(kind) ||
    typeof payload !== 'string'
  ) {
    return undefined;
  }
  return { callId, to, kind: kind as CallSignalKind, payload };
}

/**
 * A call signal (SDP offer/answer, ICE candidate) for one device of a call: sent with
 * `sendEphemeral`, so end-to-end encrypted to the group and never stored; the other members
 * decrypt it too but ignore it (`to` is not theirs).
 */
export function callSignalEnvelope(
  signal: { callId: string; to: string; kind: CallSignalKind; payload: string },
  now = new Date(),
): Envelope {
  return {
    v: 1,
    type: 'call-signal',
    id: crypto.randomUUID(),
    sentAt: now.toISOString(),
    callId: signal.callId,
    to: signal.to,
    kind: signal.kind,
    payload: signal.payload,
  };
}

/** A typing indicator: sent with `sendEphemeral`, never stored. */
export function typingEnvelope(now = new Date()): Envelope {
  return { v: 1, type: 'typing', id: crypto.randomUUID(), sentAt: now.toISOString() };
}

/** A read receipt, "read up to `seq`": sent with `sendEphemeral`, never stored. */
export function receiptEnvelope(seq: number, now = new Date()): Envelope {
  return { v: 1, type: 'receipt', id: crypto.randomUUID(), sentAt: now.toISOString(), seq };
}

/**
 * A message timer change, "messages disappear `seconds` after they are stored" (0 = off): sent
 * with setMessageTimer, whose TIMER log entry carries the same value for the server.
 */
export function timerEnvelope(seconds: number, now = new Date()): Envelope {
  return { v: 1, type: 'timer', id: crypto.randomUUID(), sentAt: now.toISOString(), seconds };
}

/** A metadata envelope (every field: the newest entry replaces the metadata whole). */
export function metadataEnvelope(
  id: string,
  sentAt: string,
  metadata: EnvelopeMetadataFields,
): Envelope {
  return { v: 1, type: 'metadata', id, sentAt, metadata };
}

const stringOrNull = (value: unknown): value is string | null =>
  value === null || typeof value === 'string';

/** The metadata fields if they are well formed, else undefined (the envelope is then ignored). */
function readMetadata(value: unknown): EnvelopeMetadataFields | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const fields = value as Record<string, unknown>;
  if (
    !stringOrNull(fields.name) ||
    !stringOrNull(fields.description) ||
    !stringOrNull(fields.avatar)
  ) {
    return undefined;
  }
  const basedOn = typeof fields.basedOn === 'number' ? fields.basedOn : undefined;
  return {
    name: fields.name,
    description: fields.description,
    avatar: fields.avatar,
    ...(basedOn === undefined ? {} : { basedOn }),
  };
}
