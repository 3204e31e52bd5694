import type { BusEvent } from './event-bus.js';

// Exactly what Date#toJSON writes, so that no free-form string that merely looks like a date
// (a user-chosen name, say) is ever turned into a Date.
const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * JSON.parse reviver: a string under a key ending in `At` (`createdAt`, `expiresAt`) that holds
 * an ISO instant becomes a Date again; every other value stays as JSON left it.
 */
export function reviveDates(key: string, value: unknown): unknown {
  if (typeof value === 'string' && key.endsWith('At') && ISO_INSTANT.test(value)) {
    const date = new Date(value);
    if (!Number.isNaN(date.getTime())) return date;
  }
  return value;
}

/** Whether a value has the shape every event must have: a JSON object with a string `type`. */
export function isBusEvent(value: unknown): value is BusEvent {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    'type' in value &&
    typeof value.type === 'string'
  );
}

/** The wire form of an event; throws a TypeError for anything that is not a JSON-safe event. */
export function encodeEvent(event: unknown): string {
  if (!isBusEvent(event)) {
    throw new TypeError('An event must be a JSON object with a string "type"');
  }
  // Throws on bigints and cycles, which is what we want: the publisher learns at once.
  return JSON.stringify(event);
}

/** Parses the wire form back, reviving `…At` dates; throws a TypeError if it is not an event. */
export function decodeEvent(text: string): BusEvent {
  const value: unknown = JSON.parse(text, reviveDates);
  if (!isBusEvent(value)) {
    throw new TypeError('An event must serialise to a JSON object with a string "type"');
  }
  return value;
}
