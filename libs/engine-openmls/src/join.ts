/** Joining a group from a Welcome with core-crypto. */
import type { ConversationId, CoreCryptoContext } from '@wireapp/core-crypto/browser';
import type { CoreCryptoApi } from './core-crypto.js';
import { fail } from './errors.js';
import { WireError, WireFormat, wireFormatOf } from './wire.js';

/** core-crypto's Welcome. */
export type ParsedWelcome = InstanceType<CoreCryptoApi['Welcome']>;

/** A Welcome (an MLSMessage) as core-crypto takes it; INVALID_MESSAGE if it is none. */
export function parseWelcome(api: CoreCryptoApi, welcome: Uint8Array): ParsedWelcome {
  try {
    if (wireFormatOf(welcome) !== WireFormat.welcome) throw new WireError('not a Welcome');
    return new api.Welcome(welcome);
  } catch (error) {
    throw fail('INVALID_MESSAGE', 'the Welcome does not decode', error);
  }
}

/** Joins the group of a Welcome inside a core-crypto transaction; the group's conversation id. */
export function joinGroup(
  context: CoreCryptoContext,
  welcome: ParsedWelcome,
): Promise<ConversationId> {
  return context.processWelcomeMessage(welcome);
}
