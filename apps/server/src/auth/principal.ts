/** Who is calling: always a Parley user; devices are named per operation and checked. */
export interface Principal {
  userId: string;
  /** The bearer token's id (its `jti`, or its SHA-256 when it has none): what signOut revokes. */
  tokenId: string;
  /** When the bearer token expires: how long signOut must remember it. */
  expiresAt: Date;
}
