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
  let app;
  try {
    app = await createApp(config);
    await app.listen(config.port, config.host);
  } catch (error) {
    // Nest has logged the failure with its stack; this line is the one a person reads.
    console.error(
      `Parley did not start: ${error instanceof Error ? error.message : String(error)}`,
    );
    process.exit(1);
  }
  const where =
    config.database.kind === 'postgres'
      ? 'PostgreSQL'
      : `PGlite (${config.database.dataDir ?? 'in memory'})`;
  new Logger('Parley').log(`GraphQL at ${await app.getUrl()}/graphql on ${where}`);
}

await main();
