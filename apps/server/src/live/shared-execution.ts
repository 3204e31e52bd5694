import {
  execute,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLError,
  type GraphQLFormattedError,
  type GraphQLNamedType,
  type GraphQLSchema,
  getNamedType,
  isAbstractType,
  isObjectType,
  Kind,
  type OperationDefinitionNode,
  OperationTypeNode,
  visit,
} from 'graphql';

/** The one live subscription whose results are shared between subscribers. */
export const EVENTS_FIELD = 'events';

/**
 * Refuses a schema in which the result of the `events` subscription could depend on who
 * subscribed: any field below its type (the DeviceEvent union's members and every type they
 * reach) with arguments, or with a resolver that takes more than the parent object. Such a
 * resolver would see one subscriber's context and variables and hand its answer to every other
 * subscriber; one that reads the event alone answers the same for everyone. Called at startup.
 */
export function assertSharedExecutable(schema: GraphQLSchema): void {
  const field = schema.getSubscriptionType()?.getFields()[EVENTS_FIELD];
  if (field === undefined) return;
  const seen = new Set<GraphQLNamedType>();
  const offending: string[] = [];
  const walk = (type: GraphQLNamedType): void => {
    if (seen.has(type)) return;
    seen.add(type);
    if (isAbstractType(type)) {
      for (const member of schema.getPossibleTypes(type)) walk(member);
      return;
    }
    if (!isObjectType(type)) return;
    for (const child of Object.values(type.getFields())) {
      // A resolver that declares only the parent (Nest's property reader, `(root) => root[name]`)
      // cannot see the arguments, the context or the operation; any other may.
      if ((child.resolve !== undefined && child.resolve.length !== 1) || child.args.length > 0) {
        offending.push(`${type.name}.${child.name}`);
      }
      walk(getNamedType(child.type));
    }
  };
  walk(getNamedType(field.type));
  if (offending.length > 0) {
    throw new Error(
      `The ${EVENTS_FIELD} subscription is executed once per event for all subscribers, so its ` +
        `types must not have field resolvers or arguments: ${offending.join(', ')}`,
    );
  }
}

/** Whether an operation is the `events` subscription with nothing else at its root. */
export function isEventsSubscription(operation: OperationDefinitionNode): boolean {
  if (operation.operation !== OperationTypeNode.SUBSCRIPTION) return false;
  const [first, ...rest] = operation.selectionSet.selections;
  return rest.length === 0 && first?.kind === Kind.FIELD && first.name.value === EVENTS_FIELD;
}

/**
 * What makes two subscriptions' results for one event the same: the query text, the operation
 * and the variables, except one that only names the device (`events(deviceId: $id)`) — the
 * event a device receives was chosen for it already, and nothing in the selection reads it.
 */
export function sharingKey(
  query: string,
  operation: OperationDefinitionNode,
  operationName: string | null | undefined,
  variables: Readonly<Record<string, unknown>> | null | undefined,
): string {
  const [root] = operation.selectionSet.selections;
  let deviceVariable: string | undefined;
  if (root?.kind === Kind.FIELD) {
    const argument = root.arguments?.find((arg) => arg.name.value === 'deviceId');
    if (argument?.value.kind === Kind.VARIABLE) deviceVariable = argument.value.name.value;
  }
  if (deviceVariable !== undefined) {
    // Used anywhere else (a directive, say), it may change the result: then it stays in the key.
    let uses = 0;
    visit(operation.selectionSet, {
      Variable(node) {
        if (node.name.value === deviceVariable) uses += 1;
      },
    });
    if (uses !== 1) deviceVariable = undefined;
  }
  const shared: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(variables ?? {})) {
    if (name !== deviceVariable) shared[name] = value;
  }
  return JSON.stringify([query, operationName ?? null, shared]);
}

/** Distinct sharing keys {@link SharedExecution.intern} keeps one copy of. */
export const INTERNED_KEYS = 256;

/** Maps a result's errors the way graphql-ws's onNext would (the one error mapping). */
export type FormatErrors = (errors: readonly GraphQLError[]) => GraphQLFormattedError[];

/**
 * The `next` payloads of the `events` subscription, executed and serialised once per (event,
 * sharing key) and handed to every subscriber of that key. Events are keyed by identity: the
 * live stream builds one object per bus event for all its subscribers, so a second subscriber
 * finds the first one's bytes. Entries go when the event is collected.
 */
export class SharedExecution {
  private readonly payloads = new WeakMap<object, Map<string, Buffer>>();
  /** Each sharing key once, however many subscribers hold it (a key carries the query text). */
  private readonly keys = new Map<string, string>();

  constructor(private readonly formatErrors: FormatErrors) {}

  /**
   * The one copy of `key` that every subscriber of it keeps: hundreds of bytes less per live
   * subscriber. Up to {@link INTERNED_KEYS} distinct keys are kept (apps send a few documents).
   */
  intern(key: string): string {
    const known = this.keys.get(key);
    if (known !== undefined) return known;
    if (this.keys.size < INTERNED_KEYS) this.keys.set(key, key);
    return key;
  }

  /**
   * What every subscriber's `next` message for `event` under `args` ends with, after its own
   * `{"id":…,"type":"next","payload":`: the serialised payload (`{"data":…}`, errors mapped)
   * and the message's closing brace, as UTF-8 bytes every subscriber's socket is given (encoded
   * once, not once per socket). Resolvers of the event types are synchronous property reads
   * (see {@link assertSharedExecutable}), so execution completes at once.
   */
  messageTail(key: string, args: ExecutionArgs, event: object): Buffer {
    let byKey = this.payloads.get(event);
    const cached = byKey?.get(key);
    if (cached !== undefined) return cached;
    const result = execute({ ...args, rootValue: event });
    if (result instanceof Promise) {
      throw new Error(`The ${EVENTS_FIELD} selection did not complete synchronously`);
    }
    const payload = Buffer.from(`${this.serialise(result)}}`);
    if (byKey === undefined) {
      byKey = new Map();
      this.payloads.set(event, byKey);
    }
    byKey.set(key, payload);
    return payload;
  }

  private serialise(result: ExecutionResult): string {
    if (result.errors === undefined) return JSON.stringify(result);
    return JSON.stringify({ ...result, errors: this.formatErrors(result.errors) });
  }
}
