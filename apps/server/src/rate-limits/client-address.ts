import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { GqlExecutionContext } from '@nestjs/graphql';

/** Where a request came from, when nothing better is known (counted as one address). */
export const UNKNOWN_ADDRESS = 'unknown';

/** The parts of a WebSocket upgrade request (Node's IncomingMessage) the address comes from. */
interface UpgradeRequest {
  headers?: Record<string, string | string[] | undefined>;
  socket?: { remoteAddress?: string };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/**
 * The client address of a graphql-ws connection from its upgrade request, the way Fastify's
 * `trustProxy: <hops>` finds `request.ip` for HTTP (which the upgrade does not go through): the
 * TCP peer, then X-Forwarded-For from the right, trusting `hops` proxies in front of Parley.
 */
export function upgradeRequestAddress(request: unknown, hops: number): string {
  if (!isRecord(request)) return UNKNOWN_ADDRESS;
  const { headers, socket } = request as UpgradeRequest;
  const peer = socket?.remoteAddress ?? UNKNOWN_ADDRESS;
  if (hops === 0) return peer;
  const header = headers?.['x-forwarded-for'];
  const forwarded = (Array.isArray(header) ? header.join(',') : (header ?? ''))
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
  const chain = [peer, ...forwarded.reverse()];
  return chain[Math.min(hops, chain.length - 1)] ?? peer;
}

/**
 * The client address of a GraphQL operation: Fastify's `request.ip` over HTTP (which honours
 * PARLEY_TRUST_PROXY), or the address graphql.options.ts put on a graphql-ws context.
 */
export function clientAddressOf(context: unknown): string {
  if (!isRecord(context)) return UNKNOWN_ADDRESS;
  if (typeof context.clientAddress === 'string') return context.clientAddress;
  const request = context.req;
  if (isRecord(request) && typeof request.ip === 'string') return request.ip;
  return UNKNOWN_ADDRESS;
}

/** Injects the client address of a GraphQL operation (see {@link clientAddressOf}). */
export const ClientAddress = createParamDecorator(
  (_data: unknown, context: ExecutionContext): string =>
    clientAddressOf(GqlExecutionContext.create(context).getContext()),
);
