import { Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { DomainError } from '../common/domain.errors.js';
import { TokenRevocations } from './token-revocations.js';
import { TokenService } from './token.service.js';

/** graphql-ws close code for a socket whose token was revoked (its "Unauthorized"). */
export const TOKEN_REVOKED_CLOSE_CODE = 4401;
/** The close reason that goes with {@link TOKEN_REVOKED_CLOSE_CODE}. */
export const TOKEN_REVOKED_CLOSE_REASON = 'Token revoked';

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
   * Registers a socket by the token in its connection params; returns its unregistration.
   * A socket without a valid token is not registered: each of its operations is refused anyway.
   */
  async register(token: string | undefined, close: Socket['close']): Promise<() => void> {
    if (token === undefined) return () => undefined;
    let userId: string;
    try {
      userId = (await this.tokens.authenticate(token)).userId;
    } catch (error) {
      if (error instanceof DomainError) return () => undefined;
      throw error;
    }
    const socket: Socket = { token, close };
    const sockets = this.byUser.get(userId) ?? new Set<Socket>();
    sockets.add(socket);
    this.byUser.set(userId, sockets);
    return () => {
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
