import { type CanActivate, type ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { GqlExecutionContext } from '@nestjs/graphql';
import { unauthenticated } from '../common/domain.errors.js';
import type { Principal } from './principal.js';
import { IS_PUBLIC } from './public.decorator.js';
import { type TokenCredential, TokenService } from './token.service.js';

const PRINCIPAL = Symbol('principal');

/** The GraphQL context as Parley builds it: the HTTP request, or graphql-ws connection params. */
export interface GraphqlContext {
  req?: { headers?: Record<string, string | string[] | undefined> };
  connectionParams?: Record<string, unknown>;
  /**
   * What the bearer token of a graphql-ws connection established when the connection was
   * accepted (the token itself is not kept): checked again for each operation.
   */
  credential?: TokenCredential;
  [PRINCIPAL]?: Principal;
}

/** The principal the guard stored on this context, if any. */
export function principalOf(context: GraphqlContext): Principal | undefined {
  return context[PRINCIPAL];
}

/** The bearer token of an HTTP request or of a graphql-ws connection, if it carries one. */
export function bearerToken(context: GraphqlContext): string | undefined {
  const header = context.connectionParams?.authorization ?? context.req?.headers?.authorization;
  if (typeof header !== 'string') return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
  return match?.[1];
}

/** Default-deny: every GraphQL operation needs a valid bearer token unless marked @Public. */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly tokens: TokenService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const isPublic = this.reflector.getAllAndOverride<boolean | undefined>(IS_PUBLIC, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (isPublic === true || context.getType<string>() !== 'graphql') return true;
    const graphqlContext = GqlExecutionContext.create(context).getContext<GraphqlContext>();
    if (graphqlContext.credential !== undefined) {
      graphqlContext[PRINCIPAL] = await this.tokens.recheck(graphqlContext.credential);
      return true;
    }
    const token = bearerToken(graphqlContext);
    if (token === undefined) throw unauthenticated();
    graphqlContext[PRINCIPAL] = await this.tokens.authenticate(token);
    return true;
  }
}
