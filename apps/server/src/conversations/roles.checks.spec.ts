import { describe, expect, it } from 'vitest';
import { DomainError } from '../common/domain.errors.js';
import { type CommitAuthorization, checkCommitAuthorization } from './roles.checks.js';

const ALICE = '00000000-0000-4000-8000-00000000000a';
const BOB = '00000000-0000-4000-8000-00000000000b';
const CAROL = '00000000-0000-4000-8000-00000000000c';

const group = (patch: Partial<CommitAuthorization>): CommitAuthorization => ({
  kind: 'GROUP',
  directUsers: null,
  committerUserId: BOB,
  committerRole: 'MEMBER',
  added: [],
  removed: [],
  ...patch,
});

function reasonOf(commit: CommitAuthorization): string | null {
  try {
    checkCommitAuthorization(commit);
    return null;
  } catch (error) {
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).code).toBe('FORBIDDEN');
    return String((error as DomainError).details.reason);
  }
}

describe('checkCommitAuthorization', () => {
  it("refuses a member's adds and removals of other users' devices", () => {
    expect(reasonOf(group({ added: [{ deviceId: 'c1', userId: CAROL }] }))).toBe('ADMIN_REQUIRED');
    expect(reasonOf(group({ removed: [{ deviceId: 'a1', userId: ALICE, leaving: false }] }))).toBe(
      'ADMIN_REQUIRED',
    );
  });

  it('lets a member add and remove their own devices, and remove leaving or deleted ones', () => {
    expect(reasonOf(group({ added: [{ deviceId: 'b2', userId: BOB }] }))).toBeNull();
    expect(
      reasonOf(group({ removed: [{ deviceId: 'b2', userId: BOB, leaving: false }] })),
    ).toBeNull();
    expect(
      reasonOf(group({ removed: [{ deviceId: 'a1', userId: ALICE, leaving: true }] })),
    ).toBeNull();
    expect(
      reasonOf(group({ removed: [{ deviceId: 'x1', userId: null, leaving: true }] })),
    ).toBeNull();
  });

  it('lets an admin add and remove anyone', () => {
    expect(
      reasonOf(
        group({
          committerRole: 'ADMIN',
          added: [{ deviceId: 'c1', userId: CAROL }],
          removed: [{ deviceId: 'a1', userId: ALICE, leaving: false }],
        }),
      ),
    ).toBeNull();
  });

  it('keeps a direct conversation to its two users, who are equal', () => {
    const direct = group({ kind: 'DIRECT', directUsers: [ALICE, BOB], committerRole: 'ADMIN' });
    expect(reasonOf({ ...direct, added: [{ deviceId: 'a2', userId: ALICE }] })).toBeNull();
    expect(reasonOf({ ...direct, added: [{ deviceId: 'c1', userId: CAROL }] })).toBe(
      'DIRECT_CONVERSATION',
    );
    expect(
      reasonOf({ ...direct, removed: [{ deviceId: 'a1', userId: ALICE, leaving: false }] }),
    ).toBeNull();
  });
});
