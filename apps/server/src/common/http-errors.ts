import { type ArgumentsHost, Catch, type ExceptionFilter, HttpException } from '@nestjs/common';
import type { Socket } from 'node:net';
import type { FastifyReply } from 'fastify';
import type { ErrorCode } from '@parley/protocol';

function statusOf(exception: unknown): number {
  if (exception instanceof HttpException) return exception.getStatus();
  if (typeof exception === 'object' && exception !== null && 'statusCode' in exception) {
    const status = exception.statusCode;
    if (typeof status === 'number' && status >= 400 && status < 600) return status;
  }
  return 500;
}

/**
 * Errors raised outside GraphQL — by Fastify before a request reaches it (body too large,
 * malformed JSON) or by plain HTTP routes — get the same shape and codes as GraphQL errors, so
 * clients handle one kind of error. GraphQL errors pass through to Apollo untouched.
 */
@Catch()
export class HttpErrorFilter implements ExceptionFilter {
  constructor(private readonly bodyLimit: number) {}

  catch(exception: unknown, host: ArgumentsHost): unknown {
    if (host.getType() !== 'http') return exception;
    const status = statusOf(exception);
    const tooLarge = status === 413;
    const code: ErrorCode = tooLarge
      ? 'LIMIT_EXCEEDED'
      : status === 404
        ? 'NOT_FOUND'
        : status < 500
          ? 'BAD_REQUEST'
          : 'INTERNAL_SERVER_ERROR';
    const extensions = tooLarge ? { code, limit: this.bodyLimit } : { code };
    const message = tooLarge
      ? `Request body exceeds the limit of ${this.bodyLimit} bytes`
      : status < 500 && exception instanceof Error
        ? exception.message
        : 'Internal server error';
    void host
      .switchToHttp()
      .getResponse<FastifyReply>()
      .status(status)
      .send({ errors: [{ message, extensions }] });
    return undefined;
  }
}

interface ClientErrorReply {
  status: number;
  code: ErrorCode;
  message: string;
}

/** What Node reports of a connection it gave up on before any route saw a request. */
const CLIENT_ERRORS: Record<string, ClientErrorReply> = {
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: 408,
    code: 'REQUEST_TIMEOUT',
    message: 'The request did not arrive in time',
  },
  HPE_HEADER_OVERFLOW: {
    status: 431,
    code: 'LIMIT_EXCEEDED',
    message: 'The request headers are too large',
  },
};

const MALFORMED: ClientErrorReply = {
  status: 400,
  code: 'BAD_REQUEST',
  message: 'The request is malformed',
};

/**
 * Fastify's clientErrorHandler: a timed-out request, oversized headers or a malformed request get
 * the same JSON error shape and codes as every other error, then the connection is closed.
 */
export function clientErrorHandler(error: NodeJS.ErrnoException, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const known = CLIENT_ERRORS[error.code ?? ''] ?? MALFORMED;
  if (socket.writable) {
    const body = JSON.stringify({
      errors: [{ message: known.message, extensions: { code: known.code } }],
    });
    socket.write(
      `HTTP/1.1 ${String(known.status)} ${known.message}\r\nConnection: close\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${String(Buffer.byteLength(body))}\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}
