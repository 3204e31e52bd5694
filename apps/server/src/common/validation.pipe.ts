import { type ArgumentMetadata, ValidationPipe, type ValidationError } from '@nestjs/common';
import { DomainError } from './domain.errors.js';

/**
 * The longest string any argument may hold. Every string Parley takes is short (ids, names,
 * usernames, passwords); bulk data travels as Bytes, which is a Buffer here and bounded per field.
 */
export const MAX_STRING_LENGTH = 1024;

// A UTF-16 surrogate without its partner cannot be encoded as UTF-8: PostgreSQL would get U+FFFD.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function checkString(value: string, path: string): void {
  if (value.length > MAX_STRING_LENGTH) {
    throw new DomainError(
      'BAD_USER_INPUT',
      `${path} is longer than ${MAX_STRING_LENGTH} characters`,
      { field: path, limit: MAX_STRING_LENGTH },
    );
  }
  // PostgreSQL text cannot hold NUL: left alone, it fails the statement (and its whole batch).
  if (value.includes('\u0000')) {
    throw new DomainError('BAD_USER_INPUT', `${path} holds a NUL character`, { field: path });
  }
  if (LONE_SURROGATE.test(value)) {
    throw new DomainError('BAD_USER_INPUT', `${path} is not valid Unicode`, { field: path });
  }
}

/** Every string inside an argument value (input objects and lists included), checked. */
export function checkStrings(value: unknown, path: string): void {
  if (typeof value === 'string') {
    checkString(value, path);
  } else if (Array.isArray(value)) {
    value.forEach((item, index) => {
      checkStrings(item, `${path}[${String(index)}]`);
    });
  } else if (
    typeof value === 'object' &&
    value !== null &&
    !(value instanceof Uint8Array) &&
    !(value instanceof Date)
  ) {
    for (const [key, item] of Object.entries(value)) checkStrings(item, `${path}.${key}`);
  }
}

function describe(errors: ValidationError[], prefix = ''): string[] {
  return errors.flatMap((error) => [
    ...Object.values(error.constraints ?? {}).map((message) => `${prefix}${message}`),
    ...describe(error.children ?? [], `${prefix}${error.property}.`),
  ]);
}

/**
 * A hand-written check of one input class: the messages its class-validator decorators would
 * give, in the same order (empty when the value is valid).
 */
export type HandCheck = (value: Readonly<Record<string, unknown>>) => string[];

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any class, whatever its constructor
type InputClass = abstract new (...args: any[]) => unknown;

const handChecks = new Map<InputClass, HandCheck>();

/**
 * Has the pipe check `type` (exactly this class, not its subclasses) with `check` instead of
 * class-validator: for the inputs of the send path, where class-validator's instance building
 * and metadata walk cost ~0.14 ms a message, the hand check microseconds. `check` must give the
 * verdicts and messages of the class's decorators (validation.pipe.spec.ts compares them).
 */
export function checkByHand(type: InputClass, check: HandCheck): void {
  handChecks.set(type, check);
}

/**
 * The one place client input is checked before any resolver (HTTP and graphql-ws alike): no
 * string anywhere may hold NUL or a lone surrogate or exceed {@link MAX_STRING_LENGTH}, then
 * class-validator (or a class's {@link checkByHand} check) checks the input types. Both fail with
 * BAD_USER_INPUT like any domain error.
 */
export class ParleyValidationPipe extends ValidationPipe {
  override transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    if (metadata.type !== 'custom') checkStrings(value, metadata.data ?? 'argument');
    const byHand = metadata.metatype === undefined ? undefined : handChecks.get(metadata.metatype);
    if (byHand !== undefined && typeof value === 'object' && value !== null) {
      const errors = byHand(value as Record<string, unknown>);
      if (errors.length > 0) throw new DomainError('BAD_USER_INPUT', errors.join('; '));
      return Promise.resolve(value);
    }
    return super.transform(value, metadata);
  }
}

/** The options of the application-wide pipe. */
export const VALIDATION_OPTIONS = {
  transform: false,
  forbidUnknownValues: false,
  exceptionFactory: (errors: ValidationError[]) =>
    new DomainError('BAD_USER_INPUT', describe(errors).join('; ')),
};

/** The application-wide pipe (see {@link ParleyValidationPipe}). */
export const validationPipe = new ParleyValidationPipe(VALIDATION_OPTIONS);
