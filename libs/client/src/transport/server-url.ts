import { BadInputError } from '../errors.js';

/**
 * The GraphQL URL of a Parley server from what a person typed: the base URL
 * (`http://host:4000`, `http://host:4000/`, or a proxy prefix such as `https://host/parley`) gets
 * `/graphql` appended; a URL that already ends in `/graphql` is kept. Anything that is not an
 * http(s) URL throws {@link BadInputError} with code `INVALID_URL`.
 */
export function normalizeServerUrl(input: string): string {
  const trimmed = input.trim();
  const refuse = () =>
    new BadInputError(
      'INVALID_URL',
      `${trimmed === '' ? 'An empty string' : trimmed} is not a server URL (expected http://host:4000 or http://host:4000/graphql)`,
      { field: 'url' },
    );
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    throw refuse();
  }
  // `localhost:4000` parses with the scheme `localhost:`; a query or fragment names no server.
  if (
    (url.protocol !== 'http:' && url.protocol !== 'https:') ||
    url.hostname === '' ||
    url.search !== '' ||
    url.hash !== ''
  ) {
    throw refuse();
  }
  const path = url.pathname.replace(/\/+$/, '');
  url.pathname = path.endsWith('/graphql') ? path : `${path}/graphql`;
  return url.toString();
}
