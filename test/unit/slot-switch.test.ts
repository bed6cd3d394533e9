import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { flagTarget, parseFlagTarget, pointLiveAt, pruneFlagDirs, readLiveFlag, restoreLiveFlag } from '../../agent/nginx/slot-switch.js';
import { NginxController } from '../../agent/nginx/controller.js';

const A = '0123456789ab-0123456789ab';
const B = 'bbbbbbbbbbbb-cccccccccccc';
const C = 'dddddddddddd-eeeeeeeeeeee';

const scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-slot-switch-'));
afterAll(() => fs.rm(scratch, { recursive: true, force: true }));
let n = 0;
const freshDir = () => path.join(scratch, `app${++n}`);

describe('switch flag naming (pure)', () => {
  it('names slot and release, and reads back only what it writes', () => {
    expect(flagTarget('green', A)).toBe(`on-green@${A}`);
    expect(flagTarget('blue', null)).toBe('on-blue@none');
    expect(() => flagTarget('blue', 'x/../y')).toThrow();
    expect(parseFlagTarget(`on-green@${A}`)).toEqual({ slot: 'green', releaseId: A, target: `on-green@${A}` });
    expect(parseFlagTarget('on-blue@none')).toEqual({ slot: 'blue', releaseId: 'none', target: 'on-blue@none' });
    // The flag an older agent wrote: the slot, no release.
    expect(parseFlagTarget('on-blue')).toEqual({ slot: 'blue', releaseId: null, target: 'on-blue' });
    for (const bad of ['on-red@x', `on-green@${A}/..`, 'on-green@UPPER', 'green', `x-on-blue@${A}`]) expect(parseFlagTarget(bad), bad).toBeNull();
  });
});

describe('switch flag on disk', () => {
  it('points, reads, prunes all but the live and the previous flag, and restores a flag as written', async () => {
    const dir = freshDir();
    expect(await readLiveFlag(dir)).toBeNull();
    await pointLiveAt(dir, 'blue', A);
    expect(await fs.readlink(path.join(dir, 'live'))).toBe(`on-blue@${A}`);
    // The slot file inside keeps includes of older templates (`if (-f live/blue)`) working.
    expect((await fs.stat(path.join(dir, 'live', 'blue'))).isFile()).toBe(true);
    await pointLiveAt(dir, 'green', B);
    const before = await readLiveFlag(dir);
    await pointLiveAt(dir, 'blue', C);
    await pruneFlagDirs(dir, before);
    expect((await fs.readdir(dir)).sort()).toEqual([`live`, `on-blue@${C}`, `on-green@${B}`]);
    await restoreLiveFlag(dir, before!);
    expect(await readLiveFlag(dir)).toEqual({ slot: 'green', releaseId: B, target: `on-green@${B}` });
  });

  it('ensureFlag creates a labelled flag, never moves its slot, and relabels it in place', async () => {
    const controller = new NginxController({ command: ['/bin/false'], pidFile: '/nonexistent', includeDir: scratch, switchDir: path.join(scratch, 'switch') });
    const dir = controller.switchDirOf('shop');
    expect(await controller.ensureFlag('shop', 'blue', { blue: A, green: null })).toBe('blue');
    expect(await controller.liveMarker('shop')).toMatchObject({ slot: 'blue', releaseId: A });
    expect(await controller.ensureFlag('shop', 'green', { blue: A, green: B })).toBe('blue');
    expect(await controller.liveMarker('shop')).toMatchObject({ slot: 'blue', releaseId: A });
    // Blue now runs C (SQLite says so): same slot, new label.
    expect(await controller.ensureFlag('shop', 'green', { blue: C, green: B })).toBe('blue');
    expect(await controller.liveMarker('shop')).toMatchObject({ slot: 'blue', releaseId: C });
    // An older agent's flag (slot only) gets its release.
    await fs.rm(path.join(dir, 'live'));
    await fs.mkdir(path.join(dir, 'on-green'));
    await fs.symlink('on-green', path.join(dir, 'live'));
    expect(await controller.ensureFlag('shop', 'blue', { blue: C, green: B })).toBe('green');
    expect(await controller.liveMarker('shop')).toMatchObject({ slot: 'green', releaseId: B });
  });
});
