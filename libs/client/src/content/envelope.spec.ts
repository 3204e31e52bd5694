import { describe, expect, it } from 'vitest';
import {
  callSignalEnvelope,
  decodeEnvelope,
  encodeEnvelope,
  InvalidEnvelopeError,
  metadataEnvelope,
  textEnvelope,
  timerEnvelope,
} from './envelope.js';

describe('envelope', () => {
  it('round-trips a text message', () => {
    const envelope = textEnvelope('hello 👋', new Date('2026-01-02T03:04:05Z'));
    expect(decodeEnvelope(encodeEnvelope(envelope))).toEqual(envelope);
    expect(envelope).toMatchObject({ v: 1, type: 'text', sentAt: '2026-01-02T03:04:05.000Z' });
  });

  it('round-trips metadata (every field, a re-send with basedOn) and drops malformed metadata', () => {
    const envelope = metadataEnvelope('m', '2026-01-01T00:00:00Z', {
      name: 'Trip',
      description: null,
      avatar: 'AQI=',
      basedOn: 7,
    });
    expect(decodeEnvelope(encodeEnvelope(envelope))).toEqual(envelope);
    const malformed = { ...envelope, metadata: { name: 3, description: null, avatar: null } };
    expect(decodeEnvelope(new TextEncoder().encode(JSON.stringify(malformed)))).not.toHaveProperty(
      'metadata',
    );
  });

  it('round-trips a timer change and drops a malformed seconds field', () => {
    const envelope = timerEnvelope(30, new Date('2026-01-02T03:04:05Z'));
    expect(envelope).toMatchObject({ v: 1, type: 'timer', seconds: 30 });
    expect(decodeEnvelope(encodeEnvelope(envelope))).toEqual(envelope);
    expect(decodeEnvelope(encodeEnvelope(timerEnvelope(0)))).toMatchObject({ seconds: 0 });
    for (const seconds of ['30', -1, 2.5, null]) {
      const malformed = { ...envelope, seconds };
      expect(
        decodeEnvelope(new TextEncoder().encode(JSON.stringify(malformed))),
      ).not.toHaveProperty('seconds');
    }
  });

  it('keeps unknown content types, without text', () => {
    const future = { v: 1, type: 'reaction', id: 'x', sentAt: '2026-01-01T00:00:00Z', emoji: '👍' };
    expect(decodeEnvelope(new TextEncoder().encode(JSON.stringify(future)))).toEqual({
      v: 1,
      type: 'reaction',
      id: 'x',
      sentAt: '2026-01-01T00:00:00Z',
    });
  });

  it('round-trips a call signal and drops a malformed one', () => {
    const signal = callSignalEnvelope({ callId: 'c', to: 'd', kind: 'offer', payload: 'v=0' });
    expect(decodeEnvelope(encodeEnvelope(signal))).toEqual(signal);
    const bad = { ...signal, kind: 'hangup' };
    const decoded = decodeEnvelope(new TextEncoder().encode(JSON.stringify(bad)));
    expect(decoded.type).toBe('call-signal');
    expect(decoded.kind).toBeUndefined();
    expect(decoded.payload).toBeUndefined();
  });

  it.each([
    ['not UTF-8', new Uint8Array([0xff, 0xfe])],
    ['not JSON', new TextEncoder().encode('hello')],
    ['another version', new TextEncoder().encode('{"v":2,"type":"text","id":"x","sentAt":"t"}')],
    ['no id', new TextEncoder().encode('{"v":1,"type":"text","sentAt":"t"}')],
  ])('rejects %s', (_name, bytes) => {
    expect(() => decodeEnvelope(bytes)).toThrow(InvalidEnvelopeError);
  });
});
