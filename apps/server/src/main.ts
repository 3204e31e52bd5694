import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { createApp } from './bootstrap.js';
import { ConfigError, loadConfig } from './config/config.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
  const app = await createApp(config);
  await app.listen(config.port, config.host);
  const where =
    config.database.kind === 'postgres'
      ? 'PostgreSQL'
      : `PGlite (${config.database.dataDir ?? 'in memory'})`;
  new Logger('Parley').log(`GraphQL at ${await app.getUrl()}/graphql on ${where}`);
}

await main();
