import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { Logger } from 'pino';
import { type RequestLogContext, requestContext } from './logger.js';

/** The header that carries a request's id, in and out. */
export const REQUEST_ID_HEADER = 'x-request-id';

// What a caller (a proxy, a client) may choose as the id: short, and nothing to escape.
const CALLER_ID = /^[\w.:-]{1,128}$/;

/** A request's id: the caller's `x-request-id` when it is a plausible one, else a fresh UUID. */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers[REQUEST_ID_HEADER];
  return typeof given === 'string' && CALLER_ID.test(given) ? given : randomUUID();
}

// Probes and scrapes come every few seconds; they are logged only at debug level.
const QUIET_PATHS = new Set(['/health', '/metrics']);

const contexts = new WeakMap<FastifyRequest, RequestLogContext>();

/**
 * One line per request, when it completed: method, path (never the query string), status,
 * time, and the GraphQL operation and outcome code when there was one. Fastify's separate
 * "incoming request" line is dropped: it says nothing the completion line does not.
 */
class RequestLogController extends LogController {
  constructor(private readonly root: Logger) {
    super({ requestIdLogLabel: 'reqId' });
  }

  override incomingRequest(): void {
    // See the class comment.
  }

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    const path = request.url.split('?', 1)[0] ?? '';
    const level = error ? 'error' : QUIET_PATHS.has(path) ? 'debug' : 'info';
    if (!this.root.isLevelEnabled(level)) return;
    reply.log[level](
      {
        req: { method: request.method, url: path, remoteAddress: request.ip },
        res: { statusCode: reply.statusCode },
        responseTime: Math.round(reply.elapsedTime * 10) / 10,
        graphql: contexts.get(request)?.graphql,
        ...(error ? { err: error } : {}),
      },
      error ? 'request errored' : 'request completed',
    );
  }
}

/** Fastify's options for JSON request logs through `logger`, with request ids. */
export function fastifyLogOptions(logger: Logger) {
  return {
    loggerInstance: logger,
    genReqId: requestIdOf,
    logController: new RequestLogController(logger),
  };
}

/**
 * Makes each request's id known to everything that runs for it (see requestContext) and returns
 * it to the caller in `x-request-id`. Entered twice: at the start, and again right before the
 * handler, because the body is read in the socket's own async context, which does not carry it.
 */
export function installRequestContext(fastify: FastifyInstance): void {
  fastify.addHook('onRequest', (request, reply, done) => {
    const context: RequestLogContext = { reqId: request.id };
    contexts.set(request, context);
    void reply.header(REQUEST_ID_HEADER, request.id);
    requestContext.enterWith(context);
    done();
  });
  fastify.addHook('preHandler', (request, _reply, done) => {
    const context = contexts.get(request);
    if (context !== undefined) requestContext.enterWith(context);
    done();
  });
}
