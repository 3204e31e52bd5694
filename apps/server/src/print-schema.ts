import 'reflect-metadata';
import { readFile, writeFile } from 'node:fs/promises';
import { NestFactory } from '@nestjs/core';
import { GraphQLSchemaBuilderModule, GraphQLSchemaFactory } from '@nestjs/graphql';
import { printSortedSchema, resolvers } from './schema.js';

// Prints the code-first schema without a database or server: `--check` fails on drift from
// the committed schema.graphql, otherwise the file is rewritten.
const file = new URL('../../../schema.graphql', import.meta.url);
const app = await NestFactory.createApplicationContext(GraphQLSchemaBuilderModule, {
  logger: false,
});
await app.init();
const printed = printSortedSchema(await app.get(GraphQLSchemaFactory).create(resolvers));
await app.close();

if (process.argv.includes('--check')) {
  const committed = await readFile(file, 'utf8').catch(() => '');
  if (committed !== printed) {
    console.error('schema.graphql is out of date: run `npm run schema:print` and commit it.');
    process.exit(1);
  }
  console.log('schema.graphql matches the code.');
} else {
  await writeFile(file, printed);
  console.log('schema.graphql written.');
}
