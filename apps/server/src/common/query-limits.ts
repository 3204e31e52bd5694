import { costLimitRule } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesRule } from '@escape.tech/graphql-armor-max-directives';
import {
  GraphQLError,
  type ASTVisitor,
  Kind,
  type ParseOptions,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';
import type { RequestErrorCode } from '@parley/protocol';
import type { QueryLimitsConfig } from '../config/config.js';

/** The code of every refusal below, so clients can tell "too complex" from "malformed". */
export const QUERY_TOO_COMPLEX = 'QUERY_TOO_COMPLEX' satisfies RequestErrorCode;

// graphql-js's own messages when its token or comment limit stops the parser ("more that" is theirs).
const TOO_MANY_TOKENS = /^Syntax Error: Document contains more th(?:at|an) \d+ (?:tokens|comments)/;

/** Whether a parse error is the token (or comment) limit's. */
export function isTokenLimitError(message: string): boolean {
  return TOO_MANY_TOKENS.test(message);
}

/**
 * The parser's bounds: graphql-js stops lexing at the limit, so a document of 50,000 aliases or
 * a 10,000-long fragment chain costs microseconds, not the seconds (and stack) of validating it.
 */
export function queryParseOptions(limits: QueryLimitsConfig): ParseOptions {
  return { maxLexicalTokens: limits.maxTokens, maxComments: limits.maxTokens };
}

const tooComplex = (context: ValidationContext | null, error: GraphQLError) => {
  context?.reportError(
    new GraphQLError(error.message.replace(/^Syntax Error: /, ''), {
      extensions: { code: QUERY_TOO_COMPLEX },
    }),
  );
};

/** Fields selected at the operation's root, through fragments too (each counted once per use). */
function countRootFields(
  selectionSet: SelectionSetNode,
  context: ValidationContext,
  seen: Set<string>,
): number {
  let count = 0;
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) {
      count += 1;
    } else if (selection.kind === Kind.INLINE_FRAGMENT) {
      count += countRootFields(selection.selectionSet, context, seen);
    } else {
      const name = selection.name.value;
      const fragment = context.getFragment(name);
      // A fragment spread twice at the root, or a cycle, is bounded by the other rules.
      if (fragment == null || seen.has(name)) continue;
      seen.add(name);
      count += countRootFields(fragment.selectionSet, context, seen);
    }
  }
  return count;
}

function maxRootFieldsRule(max: number): ValidationRule {
  return (context): ASTVisitor => ({
    OperationDefinition(operation) {
      const count = countRootFields(operation.selectionSet, context, new Set());
      if (count > max) {
        tooComplex(
          context,
          new GraphQLError(`Root fields limit of ${max} exceeded, found ${count}.`),
        );
      }
    },
  });
}

/**
 * Validation rules that bound one operation's shape — depth, aliases, root fields, directives
 * and an estimated cost — on HTTP and graphql-ws alike, before any resolver runs. graphql-armor
 * supplies the rules (maintained, used by Apollo and Envelop users); the root-field count is ours
 * (armor has none). Refusals are reported as QUERY_TOO_COMPLEX rather than thrown, so the other
 * validation errors of the same document are reported too.
 */
export function queryLimitRules(limits: QueryLimitsConfig): ValidationRule[] {
  const callbacks = { onReject: [tooComplex], propagateOnRejection: false };
  return [
    maxDepthRule({ n: limits.maxDepth, ...callbacks }),
    maxAliasesRule({ n: limits.maxAliases, allowList: [], ...callbacks }),
    maxDirectivesRule({ n: limits.maxDirectives, ...callbacks }),
    costLimitRule({ maxCost: limits.maxCost, ...callbacks }),
    maxRootFieldsRule(limits.maxRootFields),
  ];
}
