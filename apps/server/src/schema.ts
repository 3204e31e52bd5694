import { type GraphQLSchema, lexicographicSortSchema, printSchema } from 'graphql';
import { AccountsResolver } from './accounts/accounts.resolver.js';
import { DevicesResolver } from './devices/devices.resolver.js';
import { KeyPackagesResolver } from './key-packages/key-packages.resolver.js';

/** Every resolver class; an end-to-end test checks that the running app serves this schema. */
export const resolvers = [AccountsResolver, DevicesResolver, KeyPackagesResolver];

/** The schema as committed in schema.graphql: sorted, so it is stable. */
export function printSortedSchema(schema: GraphQLSchema): string {
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}
