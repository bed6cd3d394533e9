import { describe, expect, it } from 'vitest';
import { keepForRelay } from '../../controller/delta-upload.js';
import { fallsBackToDirect, fetchPath, planUploads, type RelayCandidate } from '../../controller/fleet/relay-plan.js';
import { fleetProblems, resolveRollout } from '../../controller/fleet/target.js';
import { parseDeployConfig } from '../../controller/config.js';

const host = (name: string, key: string, relay: string | null = `10.0.0.${name.slice(1)}`): RelayCandidate => ({ name, key, relay });

describe('planUploads', () => {
  it('one group of three with relay addresses: the primary uploads, the others fetch from it', () => {
    expect(planUploads([host('h1', 'k'), host('h2', 'k'), host('h3', 'k')], 'h2')).toEqual({
      relayed: [{ key: 'k', uploader: 'h2', address: '10.0.0.2', peers: ['h1', 'h3'] }], direct: [],
    });
  });

  it('the primary outside the group, or without a relay address: the group\'s first host that has one uploads', () => {
    expect(planUploads([host('h1', 'k', null), host('h2', 'k'), host('h3', 'k')], 'h9').relayed[0]).toMatchObject({ uploader: 'h2', peers: ['h1', 'h3'] });
    expect(planUploads([host('h1', 'k', null), host('h2', 'k'), host('h3', 'k')], 'h1').relayed[0]).toMatchObject({ uploader: 'h2', peers: ['h1', 'h3'] });
  });

  it('hosts that lack different contents are grouped apart; a host alone in its group is uploaded to directly', () => {
    expect(planUploads([host('h1', 'a'), host('h2', 'b'), host('h3', 'a'), host('h4', 'full')], 'h1')).toEqual({
      relayed: [{ key: 'a', uploader: 'h1', address: '10.0.0.1', peers: ['h3'] }], direct: ['h2', 'h4'],
    });
  });

  it('no relay address in a group: every host of it directly; one host: directly', () => {
    expect(planUploads([host('h1', 'k', null), host('h2', 'k', null)], 'h1')).toEqual({ relayed: [], direct: ['h1', 'h2'] });
    expect(planUploads([host('h1', 'k')], 'h1')).toEqual({ relayed: [], direct: ['h1'] });
    expect(planUploads([], 'h1')).toEqual({ relayed: [], direct: [] });
  });
});

describe('relay paths and fallbacks', () => {
  it('the fetch route and the keep flag sit beside an upload\'s path, its query kept', () => {
    expect(fetchPath('/apps/web/releases/abc')).toBe('/apps/web/releases/abc/fetch');
    expect(fetchPath('/apps/web/releases/abc?project=p&env=prod')).toBe('/apps/web/releases/abc/fetch?project=p&env=prod');
    expect(keepForRelay('/apps/web/releases/abc')).toBe('/apps/web/releases/abc?relay=1');
    expect(keepForRelay('/apps/web/releases/abc/delta?env=prod')).toBe('/apps/web/releases/abc/delta?env=prod&relay=1');
  });

  it('a peer falls back to a direct upload on relay_* and delta base failures, not on others', () => {
    for (const code of ['relay_unreachable', 'relay_refused', 'relay_artifact_missing', 'delta_base_missing', 'delta_base_mismatch']) expect(fallsBackToDirect(code)).toBe(true);
    for (const code of ['sha256_mismatch', 'agent_unreachable', 'release_exists']) expect(fallsBackToDirect(code)).toBe(false);
  });
});

describe('relay config', () => {
  const hostEntry = (extra: Record<string, unknown> = {}) => ({ address: '203.0.113.1', user: 'deploy', ...extra });
  it('a host\'s relay address and rollout.relay.port (default 7391)', () => {
    const config = parseDeployConfig({
      app: 'web', environments: { prod: { hosts: [hostEntry({ name: 'a', relay: '10.0.0.1' }), { ...hostEntry({ name: 'b' }), address: '203.0.113.2' }], rollout: { relay: {} } } },
    }, 'deploy.config.json');
    expect(config.environments!.prod!.hosts![0]!.relay).toBe('10.0.0.1');
    expect(config.environments!.prod!.rollout!.relay).toEqual({ port: 7391 });
    expect(resolveRollout(undefined, [{ host: { name: 'a' } } as never]).relayPort).toBe(7391);
    expect(resolveRollout({ batch: 1, bake: '1s', concurrency: 2, relay: { port: 9000 } }, [{ host: { name: 'a' } } as never]).relayPort).toBe(9000);
  });

  it('a relay address that is no IP, or a wildcard, is a problem named by its path', () => {
    const problems = fleetProblems('/environments/prod', {
      hosts: [hostEntry({ name: 'a', relay: 'db.internal' }), hostEntry({ name: 'b', address: '203.0.113.2', relay: '0.0.0.0' }), hostEntry({ name: 'c', address: '203.0.113.3', relay: 'fd00::3' })] as never,
    });
    expect(problems).toEqual([
      '/environments/prod/hosts/0/relay: "db.internal" is not an IP address; give the private address the other hosts reach this one at',
      '/environments/prod/hosts/1/relay: 0.0.0.0 is a wildcard; give the one private address the other hosts reach this one at',
    ]);
  });
});
