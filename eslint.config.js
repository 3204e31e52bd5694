// @ts-check
import eslint from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      '**/dist/**',
      '**/node_modules/**',
      'data/**',
      'coverage/**',
      'libs/client/src/graphql/generated.ts',
    ],
  },
  eslint.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      // Nest modules are decorated empty classes by design.
      '@typescript-eslint/no-extraneous-class': ['error', { allowWithDecorator: true }],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // GraphQL models and Nest's option types are classes used structurally: services return
      // plain objects of their shape on purpose, so that entities never leak into the API.
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
    },
  },
  // The layering (README "How it is built"). Each block names what its folder must not reach,
  // by package name and by relative path up to the repository root and down again.
  {
    files: ['apps/server/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@parley/client', '@parley/engine-openmls', '@parley/cli'],
              message: 'The server never imports the SDK, its engines or the CLI.',
            },
            {
              regex: '^(\\.\\./)+(libs/(client|engine-openmls)|apps/cli)(/|$)',
              message: 'The server never imports the SDK, its engines or the CLI.',
            },
          ],
        },
      ],
    },
  },
  {
    // What the library is made of (its build excludes the specs and their support).
    files: ['libs/mls/src/**/*.ts'],
    ignores: ['**/*.spec.ts', 'libs/mls/src/spec-support.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@parley/*'],
              message: 'libs/mls imports nothing of the project.',
            },
            {
              regex: '^(\\.\\./){2,}',
              message: 'libs/mls imports nothing of the project (src/ is flat: ../../ leaves it).',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['libs/protocol/src/**/*.ts'],
    ignores: ['**/*.spec.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(?!\\./)',
              message: '@parley/protocol imports nothing: no package, not even node:.',
            },
          ],
        },
      ],
    },
  },
  {
    // SFrame is a standalone MIT library over WebCrypto, for browsers as much as Node.
    files: ['libs/sframe/src/**/*.ts'],
    ignores: ['**/*.spec.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(?!\\./)',
              message: '@parley/sframe imports nothing: no package, not even node:.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['libs/client/src/**/*.ts', 'libs/engine-openmls/src/**/*.ts'],
    // Specs check what the SDK makes against the server's own validator (libs/mls).
    ignores: ['**/*.spec.ts', '**/spec-support.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@parley/server', '@parley/cli', '@parley/mls', '@parley/migrations'],
              message: 'The SDK never imports an app, the server or libs/mls.',
            },
            {
              regex: '^(\\.\\./)+(apps|libs/mls|migrations)(/|$)',
              message: 'The SDK never imports an app, the server or libs/mls.',
            },
          ],
        },
      ],
    },
  },
  {
    // The browser client (GPL-3.0-only) is one more client of the public API: the SDK, the
    // OpenMLS engine and the shared constants, never the server or what only the server uses.
    files: ['apps/web/**/*.{ts,tsx}'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@parley/server', '@parley/cli', '@parley/mls', '@parley/migrations'],
              message:
                'apps/web imports @parley/client, @parley/engine-openmls, @parley/protocol only.',
            },
            {
              regex: '^(\\.\\./)+(apps/(server|cli)|libs/mls|migrations)(/|$)',
              message:
                'apps/web imports @parley/client, @parley/engine-openmls, @parley/protocol only.',
            },
          ],
        },
      ],
    },
  },
  {
    // The suites' raw MLS member must not share wire-format code with what it tests.
    files: ['libs/mls-member/src/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@parley/*', '!@parley/protocol'],
              message: 'The MLS member of the suites imports only @parley/protocol of the project.',
            },
            {
              regex: '^(\\.\\./){2,}',
              message: 'The MLS member of the suites imports only @parley/protocol of the project.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['bench/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(\\.\\./)+test(/|$)',
              message: 'Benchmarks never import test code.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.js'],
    ...tseslint.configs.disableTypeChecked,
  },
  prettier,
);
