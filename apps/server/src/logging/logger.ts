import { AsyncLocalStorage } from 'node:async_hooks';
import type { LoggerService } from '@nestjs/common';
import { type DestinationStream, type Logger, pino } from 'pino';
import type { LogLevel } from '../config/config.js';

/** What is known about the HTTP request being served, for every line logged while serving it. */
export interface RequestLogContext {
  readonly reqId: string;
  /** The GraphQL operation of the request, once resolved (set by the metrics plugin). */
  graphql?: { type: string; operation: string; code: string };
}

/**
 * The request each piece of work belongs to. Entered by the HTTP hooks (request-logging.ts), and
 * carried by async/await into resolvers, services and database calls, so a line logged anywhere
 * below a request carries its id. Work shared by several requests (a batch of appended messages)
 * runs in the context of the request that started it.
 */
export const requestContext = new AsyncLocalStorage<RequestLogContext>();

/**
 * The one pino logger of an app: JSON lines with an ISO time and the level as a word. Nothing
 * Parley logs holds a header, a body or a variable; the redaction is a second line of defence in
 * case one ever does (a header object, a credentials input).
 */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        // Explicit paths: wildcards would double the cost of every line (measured, ~25 µs).
        paths: [
          'authorization',
          'headers',
          'password',
          'token',
          'variables',
          'input.password',
          'req.headers',
          'res.headers',
        ],
        censor: '[redacted]',
      },
      serializers: {
        // The path only: a query string may hold a GraphQL GET's variables.
        req: (req: { method?: string; url?: string; ip?: string }) => ({
          method: req.method,
          url: req.url?.split('?', 1)[0],
          remoteAddress: req.ip,
        }),
        res: (reply: { statusCode?: number }) => ({ statusCode: reply.statusCode }),
        err: pino.stdSerializers.err,
      },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/** The context Nest appends last to a log call (`new Logger('Context')`), if any. */
function split(params: unknown[]): { context?: string; rest: unknown[] } {
  const last = params.at(-1);
  return typeof last === 'string' ? { context: last, rest: params.slice(0, -1) } : { rest: params };
}

/** A message Nest was given, as text (objects as JSON, errors by message). */
function text(message: unknown): string {
  if (typeof message === 'string') return message;
  if (message instanceof Error) return message.message;
  try {
    return JSON.stringify(message);
  } catch {
    return String(message);
  }
}

/**
 * Nest's logger over pino: every line Nest and Parley's services log (`new Logger(...)`) becomes
 * one JSON line with its context and, inside a request, the request's id.
 */
export class PinoNestLogger implements LoggerService {
  constructor(private readonly logger: Logger) {}

  log(message: unknown, ...params: unknown[]): void {
    this.write('info', message, params);
  }

  warn(message: unknown, ...params: unknown[]): void {
    this.write('warn', message, params);
  }

  debug(message: unknown, ...params: unknown[]): void {
    this.write('debug', message, params);
  }

  verbose(message: unknown, ...params: unknown[]): void {
    this.write('trace', message, params);
  }

  fatal(message: unknown, ...params: unknown[]): void {
    this.write('fatal', message, params);
  }

  /** Nest's `error(message, stack?, context?)`. */
  error(message: unknown, ...params: unknown[]): void {
    const { context, rest } = split(params);
    const stack =
      message instanceof Error ? message.stack : typeof rest[0] === 'string' ? rest[0] : undefined;
    if (!this.logger.isLevelEnabled('error')) return;
    this.logger.error(
      {
        context,
        reqId: requestContext.getStore()?.reqId,
        ...(stack === undefined ? {} : { stack }),
      },
      text(message),
    );
  }

  private write(
    level: 'info' | 'warn' | 'debug' | 'trace' | 'fatal',
    message: unknown,
    params: unknown[],
  ): void {
    if (!this.logger.isLevelEnabled(level)) return;
    const { context } = split(params);
    this.logger[level]({ context, reqId: requestContext.getStore()?.reqId }, text(message));
  }
}
