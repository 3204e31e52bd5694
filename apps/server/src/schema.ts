import { type GraphQLSchema, lexicographicSortSchema, printSchema } from 'graphql';
import { AccountsResolver } from './accounts/accounts.resolver.js';
import { AuthResolver } from './auth/auth.resolver.js';
import { CallsResolver } from './calls/calls.resolver.js';
import { ConversationsResolver } from './conversations/conversations.resolver.js';
import { DevicesResolver } from './devices/devices.resolver.js';
import { KeyPackagesResolver } from './key-packages/key-packages.resolver.js';
import { LiveResolver } from './live/live.resolver.js';
import { MessagesResolver } from './messages/messages.resolver.js';
import { SignalsResolver } from './signals/signals.resolver.js';

/** Every resolver class; an end-to-end test checks that the running app serves this schema. */
export const resolvers = [
  AccountsResolver,
  AuthResolver,
  DevicesResolver,
  KeyPackagesResolver,
  ConversationsResolver,
  MessagesResolver,
  LiveResolver,
  SignalsResolver,
  CallsResolver,
];

/** The schema as committed in schema.graphql: sorted, so it is stable. */
export function printSortedSchema(schema: GraphQLSchema): string {
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}
