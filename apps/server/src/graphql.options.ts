import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { formatGraphqlError } from './common/graphql-errors.js';
import type { GraphqlContext } from './auth/auth.guard.js';
import type { Config } from './config/config.js';

/** graphql-ws hands the context factory its own context, which carries connectionParams. */
function isWebSocketContext(
  value: unknown,
): value is { connectionParams?: Record<string, unknown>; extra: unknown } {
  return (
    typeof value === 'object' && value !== null && 'extra' in value && 'subscriptions' in value
  );
}

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
    // Subscriptions over graphql-ws on the same path; the token travels in connectionParams.
    subscriptions: { 'graphql-ws': { path: '/graphql' } },
    context: (request: unknown): GraphqlContext =>
      isWebSocketContext(request)
        ? { connectionParams: request.connectionParams ?? {} }
        : { req: request as GraphqlContext['req'] },
  };
}
