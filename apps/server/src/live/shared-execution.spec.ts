import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { GraphQLSchemaBuilderModule, GraphQLSchemaFactory } from '@nestjs/graphql';
import {
  buildSchema,
  getOperationAST,
  GraphQLError,
  type GraphQLFieldResolver,
  type GraphQLSchema,
  isObjectType,
  parse,
} from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolvers } from '../schema.js';
import {
  assertSharedExecutable,
  isEventsSubscription,
  SharedExecution,
  sharingKey,
} from './shared-execution.js';

/** A small schema shaped like Parley's: the `events` field resolves to the event itself. */
function eventsSchema(): GraphQLSchema {
  const schema = buildSchema(`
    type Query { ok: Boolean }
    type Entry { seq: String, data: String }
    type EntryEvent { entry: Entry }
    type OtherEvent { note: String }
    union DeviceEvent = EntryEvent | OtherEvent
    type Subscription { events(deviceId: ID!): DeviceEvent }
  `);
  const events = schema.getSubscriptionType()?.getFields().events;
  if (events !== undefined) events.resolve = (event: unknown) => event;
  return schema;
}

/** Gives a field of the schema a resolver, as a @ResolveField would. */
function resolveWith(
  schema: GraphQLSchema,
  typeName: string,
  field: string,
  resolve: GraphQLFieldResolver<unknown, unknown>,
) {
  const type = schema.getType(typeName);
  if (!isObjectType(type)) throw new Error(typeName);
  const target = type.getFields()[field];
  if (target === undefined) throw new Error(field);
  target.resolve = resolve;
}

const query = `subscription Live($deviceId: ID!) {
  events(deviceId: $deviceId) { __typename ... on EntryEvent { entry { seq data } } }
}`;

describe('assertSharedExecutable', () => {
  let app: Awaited<ReturnType<typeof NestFactory.createApplicationContext>>;
  let schema: GraphQLSchema;

  beforeAll(async () => {
    app = await NestFactory.createApplicationContext(GraphQLSchemaBuilderModule, {
      logger: false,
    });
    await app.init();
    schema = await app.get(GraphQLSchemaFactory).create(resolvers);
  });

  afterAll(async () => {
    await app.close();
  });

  // Fails as soon as a DeviceEvent type (or a type one reaches) gets a field resolver that may
  // read the subscriber's arguments or context: its answer would go to every subscriber.
  it("accepts Parley's schema: every event field only reads the event", () => {
    expect(() => {
      assertSharedExecutable(schema);
    }).not.toThrow();
  });

  it('refuses a field resolver that takes the arguments, context or info', () => {
    const withContext = eventsSchema();
    resolveWith(withContext, 'Entry', 'data', (_entry, _args, context) => String(context));
    expect(() => {
      assertSharedExecutable(withContext);
    }).toThrow(/Entry\.data/);
    const rest = eventsSchema();
    resolveWith(rest, 'OtherEvent', 'note', (...args: unknown[]) => String(args.length));
    expect(() => {
      assertSharedExecutable(rest);
    }).toThrow(/OtherEvent\.note/);
  });

  it('refuses a field with arguments, and accepts a resolver of the parent alone', () => {
    expect(() => {
      assertSharedExecutable(
        buildSchema(`
          type Query { ok: Boolean }
          type Event { data(format: String): String }
          type Subscription { events(deviceId: ID!): Event }
        `),
      );
    }).toThrow(/Event\.data/);
    const reader = eventsSchema();
    resolveWith(reader, 'Entry', 'data', (entry) => (entry as { data: string }).data);
    expect(() => {
      assertSharedExecutable(reader);
    }).not.toThrow();
  });
});

describe('sharingKey', () => {
  const operation = (text: string) => {
    const found = getOperationAST(parse(text));
    if (found == null) throw new Error('no operation');
    return found;
  };

  it('leaves out the variable that only names the device, and keeps the others', () => {
    const op = operation(query);
    expect(sharingKey(query, op, 'Live', { deviceId: 'a' })).toBe(
      sharingKey(query, op, 'Live', { deviceId: 'b' }),
    );
    expect(sharingKey(query, op, 'Live', { deviceId: 'a', other: 1 })).not.toBe(
      sharingKey(query, op, 'Live', { deviceId: 'a', other: 2 }),
    );
    expect(sharingKey(`${query} `, op, 'Live', { deviceId: 'a' })).not.toBe(
      sharingKey(query, op, 'Live', { deviceId: 'a' }),
    );
  });

  it('keeps the device variable when the selection uses it too', () => {
    const text = `subscription ($deviceId: ID!, $yes: Boolean!) {
      events(deviceId: $deviceId) { __typename @include(if: $yes) ... on OtherEvent { note @skip(if: $yes) } }
    }`;
    const other = `subscription ($deviceId: Boolean!) {
      events(deviceId: "x") { __typename @include(if: $deviceId) }
    }`;
    expect(sharingKey(text, operation(text), null, { deviceId: 'a', yes: true })).toBe(
      sharingKey(text, operation(text), null, { deviceId: 'b', yes: true }),
    );
    expect(sharingKey(other, operation(other), null, { deviceId: true })).not.toBe(
      sharingKey(other, operation(other), null, { deviceId: false }),
    );
  });

  it('knows the events subscription from other operations', () => {
    expect(isEventsSubscription(operation(query))).toBe(true);
    expect(isEventsSubscription(operation('{ ok }'))).toBe(false);
    expect(isEventsSubscription(operation('subscription { other }'))).toBe(false);
  });
});

describe('SharedExecution', () => {
  it('executes and serialises once per event and key, for every subscriber', () => {
    const schema = eventsSchema();
    let executions = 0;
    resolveWith(schema, 'Entry', 'seq', (entry) => {
      executions += 1;
      return (entry as { seq: string }).seq;
    });
    (schema.getType('DeviceEvent') as { resolveType?: unknown }).resolveType = (value: object) =>
      'entry' in value ? 'EntryEvent' : 'OtherEvent';
    const shared = new SharedExecution((errors) => errors.map((error) => error.toJSON()));
    const document = parse(query);
    const op = getOperationAST(document);
    if (op == null) throw new Error('no operation');
    const subscriber = (deviceId: string) => ({
      key: sharingKey(query, op, 'Live', { deviceId }),
      args: { schema, document, operationName: 'Live', variableValues: { deviceId } },
    });
    const first = subscriber('device-1');
    const second = subscriber('device-2');
    const event = { entry: { seq: '7', data: 'AAEC' } };

    const bytes = shared.messageTail(first.key, first.args, event);
    // The very same bytes for the second subscriber: executed and encoded once.
    expect(shared.messageTail(second.key, second.args, event)).toBe(bytes);
    // The payload, then the closing brace of the `next` message it ends.
    const tail = bytes.toString();
    expect(tail.endsWith('}}')).toBe(true);
    const one = tail.slice(0, -1);
    expect(executions).toBe(1);
    expect(JSON.parse(one)).toEqual({
      data: { events: { __typename: 'EntryEvent', entry: { seq: '7', data: 'AAEC' } } },
    });
    // A frame as graphql-ws writes it, byte for byte: {"id","type","payload"} in that order.
    const id = 'f0e1"d2';
    const frame = `{"id":${JSON.stringify(id)},"type":"next","payload":${tail}`;
    expect(frame).toBe(JSON.stringify({ id, type: 'next', payload: JSON.parse(one) as unknown }));

    // Another event is executed again; so is the same event under another key.
    shared.messageTail(first.key, first.args, { entry: { seq: '8', data: '' } });
    expect(executions).toBe(2);
    const otherQuery = query.replace('data }', 'data seq }');
    shared.messageTail(sharingKey(otherQuery, op, 'Live', {}), first.args, event);
    expect(executions).toBe(3);
  });

  it('maps errors the way graphql-ws would', () => {
    const schema = eventsSchema();
    resolveWith(schema, 'Entry', 'data', () => {
      throw new GraphQLError('boom', { extensions: { code: 'X' } });
    });
    (schema.getType('DeviceEvent') as { resolveType?: unknown }).resolveType = () => 'EntryEvent';
    const shared = new SharedExecution((errors) =>
      errors.map((error) => ({ message: `mapped ${error.message}` })),
    );
    const document = parse(query);
    const payload = shared.messageTail(
      'k',
      { schema, document, variableValues: { deviceId: 'a' } },
      {
        entry: { seq: '1', data: 'x' },
      },
    );
    expect(JSON.parse(payload.toString().slice(0, -1))).toEqual({
      errors: [{ message: 'mapped boom' }],
      data: { events: { __typename: 'EntryEvent', entry: { seq: '1', data: null } } },
    });
  });
});
