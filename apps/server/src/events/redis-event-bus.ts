import { Logger, type LoggerService } from '@nestjs/common';
import { RedisPubSub } from 'graphql-redis-subscriptions';
import { Redis, type RedisOptions } from 'ioredis';
import { type BusEvent, EventBus, type OutgoingEvent } from './event-bus.js';
import { encodeEvent, isBusEvent, reviveDates } from './event-codec.js';
import { EventsUnavailableError } from './events.errors.js';
import type { PublishQueueOptions } from './publish-queue.js';

/** Options of {@link RedisEventBus.connect}. */
export interface RedisEventBusOptions {
  /** How long each connection may take at boot before the boot fails; default 5000 ms. */
  connectTimeoutMs?: number;
  /** Prefix of the connections' CLIENT SETNAME (`<prefix>:pub`, `<prefix>:sub`). */
  connectionName?: string;
  /** Where connection trouble is reported; default Nest's Logger. */
  logger?: Pick<LoggerService, 'log' | 'warn'>;
  /** How often both connections are PINGed to notice a Redis that hangs; default 1000 ms. */
  probeIntervalMs?: number;
  /** How long a PING may take before Redis counts as not answering; default 1000 ms. */
  probeTimeoutMs?: number;
  /** The outbox: its bound and per-publish timeout. */
  outbox?: PublishQueueOptions;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
const PUBLISH_TIMEOUT_MS = 5000;
const QUIT_TIMEOUT_MS = 2000;
const MAX_RECONNECT_DELAY_MS = 2000;
const DEFAULT_PROBE_INTERVAL_MS = 1000;
const DEFAULT_PROBE_TIMEOUT_MS = 1000;

const noop = (): void => undefined;

/**
 * The subscriber connection. RedisPubSub sends UNSUBSCRIBE and PUNSUBSCRIBE without handling
 * their promises; if the connection closes while they are queued (shutdown during an outage),
 * the rejection would be unhandled and take the process down. Marking them handled is safe:
 * RedisPubSub has already forgotten the subscription, and a dead connection holds none.
 */
class SubscriberConnection extends Redis {
  override sendCommand(...args: Parameters<Redis['sendCommand']>): unknown {
    const [command] = args;
    if (command.name === 'unsubscribe' || command.name === 'punsubscribe') {
      command.promise.catch(noop);
    }
    return super.sendCommand(...args);
  }
}

/**
 * The bus across instances: Redis pub/sub through graphql-redis-subscriptions' RedisPubSub over
 * two ioredis connections (a subscribed connection cannot publish). RedisPubSub counts
 * references per channel, so any number of streams of this process on one channel share one
 * Redis subscription.
 *
 * Redis pub/sub is at most once and forgets messages sent while a subscriber is disconnected,
 * so when the subscriber connection drops, every open stream ends with EventsUnavailableError
 * (clients resume from their cursor) instead of silently missing events; new streams are
 * refused until the connection is back.
 *
 * A Redis that hangs (frozen, overloaded, a network partition) closes no socket: a PING on each
 * connection every second notices it. Until both answer again, or after a publish timed out,
 * the bus counts as down: streams end, new ones are refused, and the outbox drops events rather
 * than let them pile up — the log has them.
 */
export class RedisEventBus extends EventBus {
  readonly backend = 'redis';
  private readonly publisher: Redis;
  private readonly subscriber: Redis;
  private readonly pubsub: RedisPubSub;
  private readonly logger: Pick<LoggerService, 'log' | 'warn'>;
  /** Both connections were ready once: from then on reconnect instead of failing. */
  private started = false;
  private healthy = true;
  private lastError: Error | null = null;
  /** A PING or publish went unanswered: down until a PING of both connections succeeds. */
  private hanging = false;
  private probing = false;
  private probeTimer: NodeJS.Timeout | undefined;
  private readonly probeIntervalMs: number;
  private readonly probeTimeoutMs: number;

  private constructor(
    private readonly url: string,
    options: RedisEventBusOptions,
  ) {
    super(options.outbox);
    this.probeIntervalMs = options.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS;
    this.probeTimeoutMs = options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    this.logger = options.logger ?? new Logger(RedisEventBus.name);
    const name = options.connectionName ?? 'parley-events';
    const common: RedisOptions = {
      // Connect explicitly in connect(), so that the boot waits for Redis and fails with a
      // clear error instead of the server starting and queueing commands for a dead host.
      lazyConnect: true,
      connectTimeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      // Before the first success give up at once (fail fast at boot); afterwards keep trying,
      // since an instance that outlives a Redis restart should recover by itself.
      retryStrategy: (attempt) =>
        this.started && !this.isClosing ? Math.min(attempt * 200, MAX_RECONNECT_DELAY_MS) : null,
    };
    this.publisher = new Redis(url, {
      ...common,
      connectionName: `${name}:pub`,
      // A publish while Redis is down fails now rather than waiting in a queue: the caller has
      // already stored the entry, and a late event is worth less than a prompt answer.
      enableOfflineQueue: false,
      commandTimeout: PUBLISH_TIMEOUT_MS,
    });
    this.subscriber = new SubscriberConnection(url, {
      ...common,
      connectionName: `${name}:sub`,
      // Every stream ends when the connection drops, so there is nothing to resubscribe;
      // resubscribing would only race the UNSUBSCRIBEs of those streams.
      autoResubscribe: false,
      // Queued (UN)SUBSCRIBEs wait for the reconnection instead of failing after N attempts.
      maxRetriesPerRequest: null,
    });
    for (const connection of [this.publisher, this.subscriber]) {
      connection.on('error', (error: Error) => {
        this.onConnectionError(error);
      });
      connection.on('ready', () => {
        this.onConnectionReady();
      });
    }
    this.subscriber.on('close', () => {
      this.onSubscriberClosed();
    });
    this.pubsub = new RedisPubSub({
      publisher: this.publisher,
      subscriber: this.subscriber,
      reviver: reviveDates,
    });
  }

  /**
   * Connects both connections to `url`; rejects with EventsUnavailableError naming REDIS_URL
   * (without credentials) if Redis cannot be reached within the timeout.
   */
  static async connect(url: string, options: RedisEventBusOptions = {}): Promise<RedisEventBus> {
    const bus = new RedisEventBus(url, options);
    try {
      await Promise.all([bus.publisher.connect(), bus.subscriber.connect()]);
    } catch (error) {
      const cause = bus.lastError ?? error;
      drop(bus.publisher);
      drop(bus.subscriber);
      throw new EventsUnavailableError(
        `Cannot connect to Redis at ${withoutCredentials(url)} (REDIS_URL): ${messageOf(cause)}`,
        { cause },
      );
    }
    bus.started = true;
    bus.lastError = null;
    bus.probeTimer = setInterval(() => {
      void bus.probe();
    }, bus.probeIntervalMs);
    // The probe must not keep a process alive that has nothing else to do.
    bus.probeTimer.unref();
    return bus;
  }

  protected override get backendAvailable(): boolean {
    return !this.hanging && this.publisher.status === 'ready' && this.subscriber.status === 'ready';
  }

  protected override publishLost(): void {
    // A publish that timed out means the streams here are cut off already; a PING decides when
    // Redis is back, rather than the next publish waiting the full timeout again.
    this.markHanging('a publish was not answered in time');
  }

  /** Publishes on the publisher connection; fails fast (EventsUnavailableError) when Redis is down. */
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- see EventBus
  async publish<E extends OutgoingEvent>(channel: string, event: E): Promise<void> {
    if (this.isClosing) throw new EventsUnavailableError('The event bus is shut down');
    // Encoded here rather than by RedisPubSub so that a bad event is a TypeError, not
    // mistaken for Redis being unavailable.
    const text = encodeEvent(event);
    try {
      await this.publisher.publish(channel, text);
    } catch (error) {
      throw new EventsUnavailableError(`Could not publish to Redis: ${messageOf(error)}`, {
        cause: error,
      });
    }
  }

  protected async subscribe(
    channel: string,
    onEvent: (event: BusEvent) => void,
  ): Promise<() => void> {
    if (this.isClosing) throw new EventsUnavailableError('The event bus is shut down');
    // While disconnected a subscription would only go live after the reconnection, with
    // everything in between lost: refuse, and let the client retry.
    if (this.subscriber.status !== 'ready') {
      throw new EventsUnavailableError('Not connected to Redis');
    }
    if (this.hanging) throw new EventsUnavailableError('Redis is not answering');
    const id = await this.pubsub.subscribe<unknown>(channel, (message) => {
      // RedisPubSub hands over the raw string when JSON.parse fails.
      if (isBusEvent(message)) onEvent(message);
      else this.logger.warn(`Dropped a message on ${channel} that is not an event`);
    });
    return () => {
      try {
        this.pubsub.unsubscribe(id);
      } catch (error) {
        this.logger.warn(`Unsubscribing from ${channel} failed: ${messageOf(error)}`);
      }
    };
  }

  protected async shutdown(): Promise<void> {
    clearInterval(this.probeTimer);
    await Promise.all([quit(this.publisher), quit(this.subscriber)]);
  }

  /** PINGs both connections; a missing PONG within the timeout marks Redis as hanging. */
  private async probe(): Promise<void> {
    if (this.probing || this.isClosing) return;
    if (this.publisher.status !== 'ready' || this.subscriber.status !== 'ready') return;
    this.probing = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      const pings = Promise.all([this.publisher.ping(), this.subscriber.ping()]);
      // The PINGs of a frozen Redis are answered (or fail) long after we stopped waiting.
      pings.catch(noop);
      const answered = await Promise.race([
        pings.then(() => true),
        new Promise<false>((resolve) => {
          timer = setTimeout(() => {
            resolve(false);
          }, this.probeTimeoutMs);
        }),
      ]);
      if (!answered) {
        this.markHanging(`no PONG within ${this.probeTimeoutMs} ms`);
      } else if (this.hanging) {
        this.hanging = false;
        this.logger.log(`Redis at ${withoutCredentials(this.url)} answers again`);
      }
    } catch (error) {
      this.markHanging(messageOf(error));
    } finally {
      clearTimeout(timer);
      this.probing = false;
    }
  }

  private markHanging(reason: string): void {
    if (this.hanging || this.isClosing) return;
    this.hanging = true;
    this.logger.warn(`Redis is not answering (${reason}); ending open event streams`);
    this.interruptStreams(
      new EventsUnavailableError('Redis is not answering; events may have been missed'),
    );
  }

  private onConnectionError(error: Error): void {
    this.lastError = error;
    // One line per outage, not one per reconnection attempt; none at boot, where connect()
    // reports the error itself.
    if (this.started && this.healthy && !this.isClosing) {
      this.healthy = false;
      this.logger.warn(`Redis connection trouble: ${error.message}`);
    }
  }

  private onConnectionReady(): void {
    if (!this.healthy && this.publisher.status === 'ready' && this.subscriber.status === 'ready') {
      this.healthy = true;
      this.logger.log(`Reconnected to Redis at ${withoutCredentials(this.url)}`);
    }
  }

  private onSubscriberClosed(): void {
    if (!this.started || this.isClosing) return;
    if (this.healthy) {
      this.healthy = false;
      this.logger.warn('Lost the Redis subscriber connection; ending open event streams');
    }
    this.interruptStreams(
      new EventsUnavailableError('Lost the connection to Redis; events may have been missed'),
    );
  }
}

/** QUIT politely when connected (bounded in time); otherwise just drop the socket. */
async function quit(connection: Redis): Promise<void> {
  if (connection.status === 'ready') {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => {
        resolve('timeout');
      }, QUIT_TIMEOUT_MS);
    });
    try {
      const outcome = await Promise.race([connection.quit(), timeout]);
      if (outcome !== 'timeout') return;
    } catch {
      // Fall through to disconnect().
    } finally {
      clearTimeout(timer);
    }
  }
  drop(connection);
}

function drop(connection: Redis): void {
  // disconnect() on a socket that is already gone arms a 2 s timer that keeps the process
  // alive for nothing (ioredis waits for a 'close' event that has already happened).
  if (connection.status !== 'end') connection.disconnect();
}

function withoutCredentials(raw: string): string {
  try {
    const url = new URL(raw);
    url.username = '';
    url.password = '';
    return url.toString();
  } catch {
    return '(unparseable URL)';
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
