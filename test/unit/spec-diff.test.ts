import { describe, expect, it } from 'vitest';
import { checkAppSpec, specDigest, type AppSpec } from '../../contract/spec.js';
import { formatSpecDiff, pickRelease } from '../../controller/commands/diff.js';
import { specDiff } from '../../contract/spec-diff.js';

function spec(raw: unknown): AppSpec {
  const checked = checkAppSpec(raw);
  if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
  return checked.spec;
}

const base = {
  processes: { web: { script: 'server.js' }, api: { command: ['python3', '-m', 'uvicorn', 'main:app', '--port', '$PORT'] } },
  routes: [{ serverNames: ['shop.test'], process: 'web' }, { serverNames: ['api.shop.test'], process: 'api' }],
};

describe('specDiff', () => {
  it('equal specs: no lines', () => {
    expect(specDiff(spec(base), spec(structuredClone(base)))).toEqual([]);
  });

  it('a process added, one removed, a route moved: one line each, by field path', () => {
    const next = structuredClone(base) as Record<string, any>;
    delete next.processes.api;
    next.processes.worker = { command: ['node', 'worker.js'] };
    next.routes = [{ serverNames: ['shop.test'], process: 'web', path: '/api' }];
    expect(specDiff(spec(base), spec(next))).toEqual([
      '- processes/api',
      '+ processes/worker',
      '~ routes/0/path: "/" → "/api"',
      '- routes/1',
    ]);
  });

  it('lists of plain values (argv, server names) change as one value; added plain fields show their value', () => {
    const next = structuredClone(base) as Record<string, any>;
    next.processes.api.command = ['python3', '-m', 'uvicorn', 'main:app', '--port', '$PORT', '--workers', '2'];
    next.routes[0].serverNames = ['shop.test', 'www.shop.test'];
    next.routes[0].clientMaxBodySize = '10m';
    next.processes.web.instances = 2;
    expect(specDiff(spec(base), spec(next))).toEqual([
      '~ processes/api/command: ["python3","-m","uvicorn","main:app","--port","$PORT"] → ["python3","-m","uvicorn","main:app","--port","$PORT","--workers","2"]',
      '~ processes/web/instances: 1 → 2',
      '+ routes/0/clientMaxBodySize: "10m"',
      '~ routes/0/serverNames: ["shop.test"] → ["shop.test","www.shop.test"]',
    ]);
  });

  it('a release without a spec (legacy config) compares as an empty spec', () => {
    const lines = specDiff(null, spec({ processes: { web: { script: 'server.js' } } }));
    expect(lines).toContain('+ processes');
    expect(lines).toContain('+ release: []');
    expect(specDiff(spec(base), null)).toContain('- routes');
    expect(specDiff(null, null)).toEqual([]);
  });

  it('cuts long values', () => {
    const a = spec({ processes: { web: { script: 'server.js', env: { BIG: 'x'.repeat(500) } } } });
    const b = spec({ processes: { web: { script: 'server.js', env: { BIG: 'y'.repeat(500) } } } });
    const [line] = specDiff(a, b);
    expect(line!.length).toBeLessThan(300);
    expect(line).toMatch(/^~ processes\/web\/env\/BIG: "x+… → "y+…$/);
  });
});

describe('deploy diff (pure parts)', () => {
  const a = { releaseId: 'aaaaaaaaaaaa-111111111111', sha: 'a'.repeat(40), state: 'good' };
  const b = { releaseId: 'aaaaaaaaaaaa-222222222222', sha: 'a'.repeat(40), state: 'live' };
  const c = { releaseId: 'cccccccccccc-333333333333', sha: 'c'.repeat(40), state: 'bad' };

  it('names a release by id, a unique prefix of its id or commit; refuses unknown and ambiguous ones', () => {
    expect(pickRelease('shop', b.releaseId, [a, b, c])).toBe(b.releaseId);
    expect(pickRelease('shop', 'aaaaaaaaaaaa-1', [a, b, c])).toBe(a.releaseId);
    expect(pickRelease('shop', 'ccccccc', [a, b, c])).toBe(c.releaseId);
    expect(() => pickRelease('shop', 'aaaaaaa', [a, b, c])).toThrow(expect.objectContaining({ code: 'release_ref_ambiguous', details: [`${a.releaseId} (good)`, `${b.releaseId} (live)`] }));
    expect(() => pickRelease('shop', 'deadbee', [a, b, c])).toThrow(expect.objectContaining({ code: 'release_not_found' }));
  });

  it('shows the changes, or that there are none, and which side ran on the legacy config', () => {
    const one = spec(base);
    const two = spec({ ...base, requiredEnv: ['DATABASE_URL'] });
    const view = (releaseId: string, s: AppSpec | null) => ({ releaseId, spec: s, specDigest: s ? specDigest(s) : null });
    expect(formatSpecDiff(view(a.releaseId, one), view(b.releaseId, two))).toBe(
      `spec of ${a.releaseId} → ${b.releaseId}:\n  ~ requiredEnv: [] → ["DATABASE_URL"]`);
    expect(formatSpecDiff(view(a.releaseId, one), view(b.releaseId, spec(base)))).toBe(`spec of ${a.releaseId} → ${b.releaseId}: unchanged (digest ${specDigest(one).slice(0, 12)})`);
    expect(formatSpecDiff(view(a.releaseId, null), view(b.releaseId, null))).toBe(
      `spec of ${a.releaseId} → ${b.releaseId}: unchanged\n  (${a.releaseId} has no deploy.spec.json: it ran on the agent's app config)\n  (${b.releaseId} has no deploy.spec.json: it ran on the agent's app config)`);
    expect(formatSpecDiff(view(a.releaseId, null), view(b.releaseId, one)).split('\n').slice(0, 3)).toEqual([
      `spec of ${a.releaseId} → ${b.releaseId}:`, `  (${a.releaseId} has no deploy.spec.json: it ran on the agent's app config)`, '  + processes',
    ]);
  });
});

describe('deploy history marks deployments that changed the spec', async () => {
  const { historyNotes } = await import('../../controller/commands/history.js');
  const row = (releaseId: string, previousRelease: string | null) => ({
    id: 1, app: 'shop', kind: 'deploy', releaseId, slot: 'green' as const, previousSlot: 'blue' as const, previousRelease, state: 'done',
    outcome: 'succeeded' as const, reason: null, requestedBy: 'a@b', startedAt: '2026-12-02T00:00:00Z', endedAt: null, note: null,
    forced: false, targetState: null, badMark: null, marksPrevious: false,
  });
  const A = 'aaaaaaaaaaaa-111111111111';
  const B = 'bbbbbbbbbbbb-222222222222';
  it('names both releases and the command when the digests differ', () => {
    expect(historyNotes(row(B, A), new Map([[A, 'd1'], [B, 'd2']]))).toEqual([`spec changed from ${A}: deploy diff ${A} ${B}`]);
  });
  it('says nothing when the spec is the same, or a release is no longer kept', () => {
    expect(historyNotes(row(B, A), new Map([[A, 'd1'], [B, 'd1']]))).toEqual([]);
    expect(historyNotes(row(B, A), new Map([[B, 'd1']]))).toEqual([]);
    expect(historyNotes(row(B, null), new Map([[B, 'd1']]))).toEqual([]);
  });
});
