import type { CodegenConfig } from '@graphql-codegen/cli';

/** Typed documents for the SDK, from the committed schema and the SDK's operations. */
const config: CodegenConfig = {
  schema: 'schema.graphql',
  documents: 'libs/client/src/graphql/operations.graphql',
  generates: {
    'libs/client/src/graphql/generated.ts': {
      plugins: ['typescript-operations', 'typed-document-node'],
      config: {
        // Bytes travel as base64 strings, SafeInt as JSON numbers, DateTime as ISO strings.
        scalars: { Bytes: 'string', SafeInt: 'number', DateTime: 'string' },
        enumsAsTypes: true,
        useTypeImports: true,
        avoidOptionals: { field: true, inputValue: false },
        skipTypename: false,
      },
    },
  },
};

export default config;
