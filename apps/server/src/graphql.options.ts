import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { formatGraphqlError } from './common/graphql-errors.js';
import type { Config } from './config/config.js';

/** Code-first GraphQL on Apollo (over Fastify), the schema printed sorted and stable. */
export function graphqlOptions(config: Pick<Config, 'development'>): ApolloDriverConfig {
  return {
    driver: ApolloDriver,
    autoSchemaFile: true,
    sortSchema: true,
    path: '/graphql',
    introspection: true,
    // Nest's GraphiQL page loads its scripts from a public CDN; Parley serves nothing that
    // fetches from elsewhere. Use any GraphQL client against /graphql.
    graphiql: false,
    includeStacktraceInErrorResponses: config.development,
    formatError: (formatted, error) => formatGraphqlError(formatted, error, config.development),
  };
}
