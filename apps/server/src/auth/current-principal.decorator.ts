import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { GqlExecutionContext } from '@nestjs/graphql';
import { unauthenticated } from '../common/domain.errors.js';
import type { Principal } from './principal.js';
import { principalOf } from './auth.guard.js';

/** Injects the authenticated {@link Principal} of a GraphQL operation. */
export const CurrentPrincipal = createParamDecorator(
  (_data: unknown, context: ExecutionContext): Principal => {
    const principal = principalOf(GqlExecutionContext.create(context).getContext());
    if (principal === undefined) throw unauthenticated();
    return principal;
  },
);
