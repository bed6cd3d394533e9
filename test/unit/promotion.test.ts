import { describe, expect, it } from 'vitest';
import { approvalStep, gitTagName, pickSourceRelease } from '../../controller/promotion.js';
import { lockReleaseRefusal } from '../../agent/rollout/locks.js';
import type { LockRow } from '../../agent/state/store.js';
import { SlipwayError } from '../../contract/errors.js';

const SHA_A = 'a'.repeat(40);
const SHA_B = 'b'.repeat(40);
const rel = (releaseId: string, sha: string, state: string, createdAt: string, liveAt: string | null = null) => ({ releaseId, sha, state, createdAt, liveAt });

describe('the release a promotion names on the source', () => {
  const releases = [
    rel('aaaaaaaaaaaa-111111111111', SHA_A, 'good', '2026-12-01T10:00:00Z', '2026-12-01T10:01:00Z'),
    rel('aaaaaaaaaaaa-222222222222', SHA_A, 'live', '2026-12-01T11:00:00Z', '2026-12-01T11:01:00Z'),
    rel('bbbbbbbbbbbb-333333333333', SHA_B, 'good', '2026-12-01T09:00:00Z'),
  ];

  it('an exact id, a unique prefix, or the commit a tag resolved to (the live one of several)', () => {
    expect(pickSourceRelease('shop', 'staging', 'aaaaaaaaaaaa-111111111111', null, releases)).toBe('aaaaaaaaaaaa-111111111111');
    expect(pickSourceRelease('shop', 'staging', 'bbbbbbb', null, releases)).toBe('bbbbbbbbbbbb-333333333333');
    expect(pickSourceRelease('shop', 'staging', 'v1.2.0', SHA_A, releases)).toBe('aaaaaaaaaaaa-222222222222');
  });

  it('nothing on the source: refused as never deployed there; two commits: ambiguous', () => {
    const never = (() => { try { pickSourceRelease('shop', 'staging', 'v9', 'c'.repeat(40), releases); } catch (e) { return e as SlipwayError; } })();
    expect(never).toMatchObject({ code: 'promotion_refused' });
    expect(never?.message).toContain('never deployed to staging');
    const both = [...releases, rel('aaaaaaaaaaab-444444444444', 'a'.repeat(11) + 'b'.repeat(29), 'good', '2026-12-01T12:00:00Z')];
    expect(() => pickSourceRelease('shop', 'staging', 'aaaaaaaaaaa', null, both)).toThrow(/matches releases of 2 commits/);
  });
});

describe('approval', () => {
  it('none needed; --yes gives it; a terminal is asked; without one it is a usage error naming --yes', () => {
    expect(approvalStep({ required: false, yes: false, interactive: false, env: 'staging' })).toBe('not_required');
    expect(approvalStep({ required: true, yes: true, interactive: false, env: 'production' })).toBe('given');
    expect(approvalStep({ required: true, yes: false, interactive: true, env: 'production' })).toBe('prompt');
    let error: SlipwayError | undefined;
    try { approvalStep({ required: true, yes: false, interactive: false, env: 'production' }); } catch (e) { error = e as SlipwayError; }
    expect(error).toMatchObject({ code: 'approval_required', kind: 'usage' });
    expect(error?.hint).toContain('--yes');
  });
});

describe('git tag names', () => {
  it('fills {env}, {date}, {shortSha}; refuses an unknown placeholder', () => {
    const at = new Date('2026-12-02T13:04:05Z');
    expect(gitTagName('deploy/{env}/{date}-{shortSha}', { env: 'production', sha: SHA_A, releaseId: 'x', at })).toBe(`deploy/production/20261202-130405-${'a'.repeat(12)}`);
    expect(() => gitTagName('deploy/{nope}', { env: 'production', sha: SHA_A, releaseId: 'x', at })).toThrow(/unknown placeholder \{nope\}/);
  });
});

describe('lock override', () => {
  const lock: LockRow = {
    app: 'shop', lockId: '00000000-0000-0000-0000-000000000001', holder: 'alice@laptop', action: 'deploy', releaseId: null,
    since: '2026-12-02T12:00:00Z', expiresAt: null, bootId: 'boot', deploymentId: 7,
  };
  it('taking someone else\'s live lock needs --force, which is what makes it an override (notified lock_overridden)', () => {
    expect(lockReleaseRefusal('shop', lock, { force: false, actor: 'bob@ci' }, false)?.code).toBe('lock_in_use');
    expect(lockReleaseRefusal('shop', lock, { force: true, actor: 'bob@ci' }, false)).toBeNull();
    // A stale lock is no override.
    expect(lockReleaseRefusal('shop', lock, { force: false, actor: 'bob@ci' }, true)).toBeNull();
  });
});

describe('history of a promoted deployment', () => {
  it('says where it came from, and why it was forced', async () => {
    const { historyNotes } = await import('../../controller/commands/history.js');
    const base = {
      id: 3, app: 'shop', kind: 'deploy', releaseId: 'aaaaaaaaaaaa-111111111111', slot: 'blue', previousSlot: null, previousRelease: null, state: 'succeeded',
      outcome: 'succeeded', reason: null, requestedBy: 'ci@runner', startedAt: '', endedAt: '', note: null, forced: false, targetState: 'ready', badMark: null,
      marksPrevious: false, env: 'production', tag: 'v1',
    } as const;
    expect(historyNotes({ ...base, promotion: { from: 'staging', sourceHost: 'deploy@stg:22', forced: false, reason: null } }))
      .toEqual(['promoted from staging (deploy@stg:22)']);
    expect(historyNotes({ ...base, promotion: { from: 'staging', sourceHost: 'deploy@stg:22', forced: true, reason: 'hotfix' } }))
      .toEqual(['promoted from staging (deploy@stg:22), forced past its gate: hotfix']);
  });
});

describe('history of the other side of a promotion', () => {
  it('shows forced promotions out of the source and refusals on the target, not what a deployment row already tells', async () => {
    const { formatPromotions } = await import('../../controller/commands/history.js');
    const at = '2026-12-01T10:00:00.000Z';
    const now = Date.parse('2026-12-01T12:00:00.000Z');
    const record = {
      id: 1, app: 'shop-staging', actor: 'ann@laptop', at, releaseId: 'aaaaaaaaaaaa-111111111111', fromEnv: 'staging', toEnv: 'production',
      otherHost: 'deploy@prod:22', reason: null, gate: 'passed', sha: null,
    } as const;
    expect(formatPromotions([], now)).toBeNull();
    // A promotion that went ahead is the target's deployment row: nothing more to say there.
    expect(formatPromotions([{ ...record, side: 'target', event: 'promoted' }], now)).toBeNull();
    const forced = formatPromotions([{ ...record, side: 'source', event: 'forced', reason: 'verified by hand', gate: 'rolled back there' }], now)!;
    expect(forced).toContain('FORCED promotion of aaaaaaaaaaaa-111111111111 to production (deploy@prod:22)  ann@laptop  2h ago');
    expect(forced).toContain('gate: rolled back there');
    expect(forced).toContain('reason: verified by hand');
    const refused = formatPromotions([{ ...record, side: 'target', event: 'refused', gate: 'never deployed to staging' }], now)!;
    expect(refused).toContain('promotion of aaaaaaaaaaaa-111111111111 from staging (deploy@prod:22) refused');
  });
});
