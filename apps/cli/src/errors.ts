import {
  BadInputError,
  DeviceRevokedError,
  LeftConversationError,
  NetworkError,
  ParleyError,
  RateLimitedError,
  RemovedFromConversationError,
  StateDecryptionError,
} from '@parley/client';

/**
 * The exit codes of every command (README "Exit codes" and `parley --help` list them). The
 * numbers follow sysexits.h where one fits, so that scripts can tell "try again later" (69, 75)
 * from "this will never work" (1, 2).
 */
export const EXIT = {
  /** Done. */
  ok: 0,
  /** The operation failed: refused by the server, not found, removed, wrong passphrase… */
  failed: 1,
  /** Usage: unknown command or option, a missing argument, an invalid server URL. */
  usage: 2,
  /** The server cannot be reached, or what answered is not a Parley server (EX_UNAVAILABLE). */
  unavailable: 69,
  /** A bug in parley itself (EX_SOFTWARE); `--debug` prints the stack. */
  internal: 70,
  /** Temporary: the profile is in use by another parley process, or rate-limited (EX_TEMPFAIL). */
  temporary: 75,
  /** Interrupted with Ctrl-C (128 + SIGINT, as shells report it). */
  interrupted: 130,
} as const;

/** The table printed by `parley --help` and in the README. */
export const EXIT_CODES_HELP = [
  'exit codes:',
  '  0    done',
  '  1    the operation failed (refused, not found, removed from the conversation, wrong passphrase)',
  '  2    usage: unknown command or option, missing argument, invalid server URL',
  '  69   the server cannot be reached (or is not a Parley server)',
  '  70   internal error in parley (run again with --debug for the stack)',
  '  75   temporary: the profile is in use by another parley process, or rate-limited',
  '  130  interrupted (Ctrl-C)',
].join('\n');

/** A failure the CLI reports itself, with the exit code it ends with. */
export class CliError extends Error {
  constructor(
    /** Stable code for `--json` (`USAGE`, `PROFILE_BUSY`, `NOT_FOUND`, …). */
    readonly code: string,
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Wrong use of the command line: exit 2. */
export class UsageError extends CliError {
  constructor(message: string) {
    super('USAGE', message, EXIT.usage);
  }
}

/** How an error is reported: one line for people, a code for `--json`, an exit code. */
export interface Outcome {
  code: string;
  message: string;
  exitCode: number;
  /** Whether it is a bug (the stack helps) rather than a failure a person can act on. */
  internal: boolean;
}

/** The one-line report and exit code of any error a command ends with. */
export function describeError(error: unknown, stateLabel: string): Outcome {
  if (error instanceof CliError)
    return { code: error.code, message: error.message, exitCode: error.exitCode, internal: false };
  if (error instanceof StateDecryptionError) {
    const message =
      error.reason === 'AUTHENTICATION_FAILED'
        ? `The passphrase does not open ${stateLabel} (wrong PARLEY_PASSPHRASE, or the file was changed)`
        : `The state of ${stateLabel} cannot be read: ${error.message}`;
    return { code: error.reason, message, exitCode: EXIT.failed, internal: false };
  }
  if (error instanceof ParleyError) {
    const exitCode =
      error instanceof NetworkError
        ? EXIT.unavailable
        : error instanceof RateLimitedError
          ? EXIT.temporary
          : error instanceof BadInputError && error.code === 'INVALID_URL'
            ? EXIT.usage
            : EXIT.failed;
    return { code: error.code, message: readable(error), exitCode, internal: false };
  }
  const message = error instanceof Error ? error.message : String(error);
  return {
    code: 'INTERNAL',
    message: `internal error: ${message} (run again with --debug for details)`,
    exitCode: EXIT.internal,
    internal: true,
  };
}

/** The SDK's message, with what to do next where the CLI knows it. */
function readable(error: ParleyError): string {
  if (error instanceof RemovedFromConversationError)
    return `${error.message}; its history stays readable (parley history)`;
  if (error instanceof LeftConversationError) return error.message;
  if (error instanceof DeviceRevokedError)
    return `${error.message} (this device was deleted; sign in and register again on a new profile)`;
  if (error instanceof RateLimitedError)
    return `${error.message} (try again in ${error.retryAfterSeconds} s)`;
  if (error.details.reason === 'ADMIN_REQUIRED')
    return `${error.message} (only an admin of the conversation may do that; parley conversations shows your role)`;
  if (error.details.reason === 'DIRECT_CONVERSATION')
    return `${error.message} (a direct conversation holds its two users only; parley create makes a group)`;
  switch (error.code) {
    case 'LAST_ADMIN':
      return `${error.message} (make someone else an admin first: parley role <conversation> <user> admin)`;
    case 'DIRECT_CONVERSATION_EXISTS':
      return `${error.message} (parley dm <user> opens it)`;
    case 'NOT_SIGNED_IN':
      return 'Not signed in: run parley signup <username> or parley signin <username> first';
    case 'NO_DEVICE':
      return 'No device yet: run parley register first';
    default:
      return error.message;
  }
}
