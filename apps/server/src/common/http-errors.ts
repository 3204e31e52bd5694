import { type ArgumentsHost, Catch, type ExceptionFilter, HttpException } from '@nestjs/common';
import type { FastifyReply } from 'fastify';

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
    const extensions = tooLarge
      ? { code: 'LIMIT_EXCEEDED', limit: this.bodyLimit }
      : {
          code:
            status === 404 ? 'NOT_FOUND' : status < 500 ? 'BAD_REQUEST' : 'INTERNAL_SERVER_ERROR',
        };
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
