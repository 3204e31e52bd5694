import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig } from './config.js';

const README = new URL('../../../../README.md', import.meta.url);

/** Every variable loadConfig looks at, found by handing it an environment that records reads. */
function variablesRead(): string[] {
  const read = new Set<string>();
  const env = new Proxy<Record<string, string | undefined>>(
    {},
    {
      get(_target, name) {
        if (typeof name === 'string') read.add(name);
        return undefined;
      },
    },
  );
  loadConfig(env);
  return [...read].sort();
}

/** The first cells of a README section's table rows: the variable names in backticks. */
function tableNames(readme: string, heading: string): string[] {
  const section = readme.split(`\n## ${heading}\n`)[1]?.split('\n## ')[0] ?? '';
  return section
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .flatMap((line) => [...(line.split('|')[1] ?? '').matchAll(/`([A-Z_*]+)`/g)])
    .map((match) => match[1] ?? '');
}

describe('README configuration table', () => {
  it('names every variable the server reads, each with a default and a meaning', () => {
    const readme = readFileSync(README, 'utf8');
    const configuration = tableNames(readme, 'Configuration');
    const limits = tableNames(readme, 'Limits and abuse');
    const wildcards = configuration.filter((name) => name.endsWith('*'));
    const missing = variablesRead().filter(
      (name) =>
        !configuration.includes(name) &&
        // A wildcard row ("PARLEY_RATE_*: see below") covers names the limits table lists one by one.
        !(
          wildcards.some((wildcard) => name.startsWith(wildcard.slice(0, -1))) &&
          limits.includes(name)
        ),
    );
    expect(missing).toEqual([]);
  });
});
