import { Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { decodeJwt } from 'jose';
import { DomainError } from '../common/domain.errors.js';
import { TokenRevocations } from './token-revocations.js';
import { TokenService } from './token.service.js';

/** graphql-ws close code for a socket whose token was revoked (its "Unauthorized"). */
export const TOKEN_REVOKED_CLOSE_CODE = 4401;
/** The close reason that goes with {@link TOKEN_REVOKED_CLOSE_CODE}. */
export const TOKEN_REVOKED_CLOSE_REASON = 'Token revoked';
/** The close reason of a socket whose token expired (same code: the client must sign in). */
export const TOKEN_EXPIRED_CLOSE_REASON = 'Token expired';

// setTimeout's longest delay; a token living longer is checked again then.
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Socket {
  token: string;
  close(code: number, reason: string): void;
}

/**
 * The graphql-ws sockets this instance holds, by the user whose token opened them. When any
 * instance revokes tokens of a user, each socket of that user here checks its token again and
 * closes if it no longer verifies, so a signed-out token keeps no live connection. After the
 * revocations channel was interrupted, every socket checks its token once it is live again.
 */
@Injectable()
export class LiveSockets implements OnModuleDestroy {
  private readonly logger = new Logger(LiveSockets.name);
  private readonly byUser = new Map<string, Set<Socket>>();
  private readonly stopListening: () => void;

  constructor(
    private readonly tokens: TokenService,
    revocations: TokenRevocations,
  ) {
    this.stopListening = revocations.onRevoked((userId) => {
      // null: revocations may have been missed while the bus was interrupted; check them all.
      for (const user of userId === null ? [...this.byUser.keys()] : [userId]) {
        void this.recheck(user);
      }
    });
  }

  onModuleDestroy(): void {
    this.stopListening();
  }

  /**
   * Registers a socket by the token in its connection params; returns its unregistration. A
   * token that does not verify is refused with its DomainError (the socket is then closed). The
   * socket is closed when the token expires, as it is when the token is revoked.
   */
  async register(token: string, close: Socket['close']): Promise<() => void> {
    const { userId } = await this.tokens.authenticate(token);
    const socket: Socket = { token, close };
    const sockets = this.byUser.get(userId) ?? new Set<Socket>();
    sockets.add(socket);
    this.byUser.set(userId, sockets);
    const { exp } = decodeJwt(token);
    let timer: NodeJS.Timeout | undefined;
    const expireAt = (at: number) => {
      timer = setTimeout(
        () => {
          if (Date.now() < at) {
            expireAt(at);
            return;
          }
          sockets.delete(socket);
          close(TOKEN_REVOKED_CLOSE_CODE, TOKEN_EXPIRED_CLOSE_REASON);
        },
        Math.min(Math.max(at - Date.now(), 0), MAX_TIMER_MS),
      );
      timer.unref();
    };
    if (exp !== undefined) expireAt(exp * 1000);
    return () => {
      clearTimeout(timer);
      sockets.delete(socket);
      if (sockets.size === 0 && this.byUser.get(userId) === sockets) this.byUser.delete(userId);
    };
  }

  private async recheck(userId: string): Promise<void> {
    const sockets = this.byUser.get(userId);
    if (sockets === undefined) return;
    for (const socket of [...sockets]) {
      try {
        await this.tokens.authenticate(socket.token);
      } catch (error) {
        if (!(error instanceof DomainError)) {
          this.logger.warn(
            `Could not recheck a live socket: ${error instanceof Error ? error.message : String(error)}`,
          );
          continue;
        }
        sockets.delete(socket);
        socket.close(TOKEN_REVOKED_CLOSE_CODE, TOKEN_REVOKED_CLOSE_REASON);
      }
    }
  }
}
