import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  findHostKeys,
  fingerprintSha256,
  hostKeyAlgorithmsFor,
  keyTypeOfBlob,
  knownHostsName,
  parseKnownHosts,
  verifyHostKey,
} from '../../controller/known-hosts.js';

// Produced by real OpenSSH 9.2 (ssh-keygen -t ed25519 / -t ecdsa, ssh-keygen -lf, ssh-keygen -H),
// so these tests pin our parsing and hashing to what OpenSSH itself writes.
const ED25519 = 'AAAAC3NzaC1lZDI1NTE5AAAAIBIbvBQB8Sx/JUhjYTIpqMJq7gkG4eMojqenA1CGxGm5';
const ED25519_FP = 'SHA256:xjpjDZiXrdWriQgeMx0YYCIOJL4A4sQqNQxg4PqJUZ4';
const ECDSA = 'AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBIHWyHHwFPdet/H3aMngG+IN6xRc9BvGY7QppeP9lekusdQuUND1kz7ORoA3cB11T77VXHo/RyZTLu+p5v9i0VM=';
const ECDSA_FP = 'SHA256:AmlaE1d1gB9naUujO1+/OXr6f7gt/1auFGrylITFLb4';
/** `ssh-keygen -H` output for `[127.0.0.1]:2222` and for `example.com`, both with the ED25519 key. */
const HASHED_PORT_2222 = '|1|6L4jcFPeC1OG6FJbd9ylQHZivJY=|ez9fPtiYakihoUXtccySvDQVvSE=';
const HASHED_EXAMPLE_COM = '|1|jldnlzpsGlXMzdHDV0AgKkM0zEU=|WH+5wVQMf+kuVdJafnJXck5RWcI=';

const ed25519Blob = Buffer.from(ED25519, 'base64');
const ecdsaBlob = Buffer.from(ECDSA, 'base64');

function sshString(value: Buffer | string): Buffer {
  const body = typeof value === 'string' ? Buffer.from(value) : value;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  return Buffer.concat([length, body]);
}

/** A syntactically valid ed25519 public key blob that nobody trusts. */
function randomEd25519(): { blob: Buffer; base64: string } {
  const blob = Buffer.concat([sshString('ssh-ed25519'), sshString(randomBytes(32))]);
  return { blob, base64: blob.toString('base64') };
}

/** What `ssh-keygen -H` writes for a name, with a salt we choose. */
function hashedHost(name: string, salt = randomBytes(20)): string {
  const hash = createHmac('sha1', salt).update(name).digest();
  return `|1|${salt.toString('base64')}|${hash.toString('base64')}`;
}

describe('fingerprints and key blobs', () => {
  it('matches ssh-keygen -lf output (base64, no padding)', () => {
    expect(fingerprintSha256(ed25519Blob)).toBe(ED25519_FP);
    expect(fingerprintSha256(ecdsaBlob)).toBe(ECDSA_FP);
    expect(ED25519_FP.endsWith('=')).toBe(false);
  });

  it('reads the key type inside a blob', () => {
    expect(keyTypeOfBlob(ed25519Blob)).toBe('ssh-ed25519');
    expect(keyTypeOfBlob(ecdsaBlob)).toBe('ecdsa-sha2-nistp256');
  });

  it('refuses blobs that are not SSH keys', () => {
    expect(() => keyTypeOfBlob(Buffer.alloc(2))).toThrow(/not an SSH public key blob/);
    expect(() => keyTypeOfBlob(Buffer.from([0, 0, 0, 200, 65, 66]))).toThrow(/not an SSH public key blob/);
    expect(() => keyTypeOfBlob(Buffer.from([0, 0, 0, 0]))).toThrow(expect.objectContaining({ code: 'ssh_key_malformed' }));
  });
});

describe('parseKnownHosts', () => {
  it('skips comments, blank lines and malformed lines, and keeps line numbers', () => {
    const text = [
      '# a comment',
      '',
      '   ',
      `host1 ssh-ed25519 ${ED25519} comment words here`,
      'host2 ssh-ed25519', // no key
      `host3 ssh-rsa ${ED25519}`, // declared type disagrees with the blob
      `host4 ssh-ed25519 not*base64`,
      `@bogus host5 ssh-ed25519 ${ED25519}`, // unknown marker
      `|2|abc|def ssh-ed25519 ${ED25519}`, // unknown hash scheme
      `host6,,host7 ssh-ed25519 ${ED25519}`, // empty pattern
      `\thost8 ecdsa-sha2-nistp256 ${ECDSA}\r`,
    ].join('\n');
    const entries = parseKnownHosts(text);
    expect(entries.map((entry) => entry.line)).toEqual([4, 11]);
    expect(entries[0]).toMatchObject({ marker: null, keyType: 'ssh-ed25519', keyBase64: ED25519 });
    expect(entries[1]).toMatchObject({ keyType: 'ecdsa-sha2-nistp256', keyBase64: ECDSA });
  });

  it('reads @revoked and @cert-authority markers', () => {
    const entries = parseKnownHosts(`@revoked * ssh-ed25519 ${ED25519}\n@cert-authority *.example.com ssh-ed25519 ${ED25519}\n`);
    expect(entries.map((entry) => entry.marker)).toEqual(['revoked', 'cert-authority']);
  });
});

describe('findHostKeys', () => {
  it('uses the bare name on port 22 and [host]:port elsewhere', () => {
    expect(knownHostsName('Example.COM', 22)).toBe('example.com');
    expect(knownHostsName('127.0.0.1', 2222)).toBe('[127.0.0.1]:2222');
    const entries = parseKnownHosts(`example.com ssh-ed25519 ${ED25519}\n[example.com]:2222 ecdsa-sha2-nistp256 ${ECDSA}\n`);
    expect(findHostKeys(entries, 'example.com', 22)).toEqual([{ keyType: 'ssh-ed25519', keyBase64: ED25519 }]);
    expect(findHostKeys(entries, 'EXAMPLE.com', 2222)).toEqual([{ keyType: 'ecdsa-sha2-nistp256', keyBase64: ECDSA }]);
    expect(findHostKeys(entries, 'example.com', 2200)).toEqual([]);
  });

  it('matches comma lists, case-insensitively', () => {
    const entries = parseKnownHosts(`web1,Web2.Example.com,10.0.0.5 ssh-ed25519 ${ED25519}\n`);
    for (const host of ['web1', 'web2.example.com', '10.0.0.5']) {
      expect(findHostKeys(entries, host, 22)).toHaveLength(1);
    }
    expect(findHostKeys(entries, 'web3', 22)).toEqual([]);
    expect(findHostKeys(entries, 'web', 22)).toEqual([]);
  });

  it('matches * and ? wildcards against the whole name, dots included', () => {
    const entries = parseKnownHosts([
      `*.example.com ssh-ed25519 ${ED25519}`,
      `web?.test ecdsa-sha2-nistp256 ${ECDSA}`,
      `[*.internal]:2222 ssh-ed25519 ${ED25519}`,
    ].join('\n'));
    expect(findHostKeys(entries, 'a.example.com', 22)).toHaveLength(1);
    expect(findHostKeys(entries, 'a.b.example.com', 22)).toHaveLength(1);
    expect(findHostKeys(entries, 'example.com', 22)).toEqual([]);
    expect(findHostKeys(entries, 'web1.test', 22)).toEqual([{ keyType: 'ecdsa-sha2-nistp256', keyBase64: ECDSA }]);
    expect(findHostKeys(entries, 'web10.test', 22)).toEqual([]);
    expect(findHostKeys(entries, 'db.internal', 2222)).toHaveLength(1);
    expect(findHostKeys(entries, 'db.internal', 22)).toEqual([]);
    // Regex metacharacters in a pattern are literal: "." must not match any character.
    expect(findHostKeys(entries, 'axexample.com', 22)).toEqual([]);
  });

  it('lets a negated pattern veto the line even when another pattern matches', () => {
    const entries = parseKnownHosts(`*.example.com,!evil.example.com ssh-ed25519 ${ED25519}\n`);
    expect(findHostKeys(entries, 'good.example.com', 22)).toHaveLength(1);
    expect(findHostKeys(entries, 'evil.example.com', 22)).toEqual([]);
    // A line of only negations matches nothing.
    expect(findHostKeys(parseKnownHosts(`!a ssh-ed25519 ${ED25519}\n`), 'b', 22)).toEqual([]);
  });

  it('matches hashed entries written by ssh-keygen -H, including the [host]:port form', () => {
    const entries = parseKnownHosts(`${HASHED_PORT_2222} ssh-ed25519 ${ED25519}\n${HASHED_EXAMPLE_COM} ssh-ed25519 ${ED25519}\n`);
    expect(findHostKeys(entries, '127.0.0.1', 2222)).toEqual([{ keyType: 'ssh-ed25519', keyBase64: ED25519 }]);
    expect(findHostKeys(entries, 'example.com', 22)).toHaveLength(1);
    expect(findHostKeys(entries, '127.0.0.1', 22)).toEqual([]);
    expect(findHostKeys(entries, '127.0.0.1', 2223)).toEqual([]);
    expect(findHostKeys(entries, 'example.org', 22)).toEqual([]);
  });

  it('matches hashed entries computed like ssh-keygen -H with fresh salts', () => {
    const other = randomEd25519();
    const entries = parseKnownHosts([
      `${hashedHost('[10.1.2.3]:2022')} ssh-ed25519 ${ED25519}`,
      `${hashedHost('deploy.example.net')} ssh-ed25519 ${other.base64}`,
    ].join('\n'));
    expect(findHostKeys(entries, '10.1.2.3', 2022)).toEqual([{ keyType: 'ssh-ed25519', keyBase64: ED25519 }]);
    expect(findHostKeys(entries, 'DEPLOY.example.net', 22)).toEqual([{ keyType: 'ssh-ed25519', keyBase64: other.base64 }]);
    expect(findHostKeys(entries, '10.1.2.3', 22)).toEqual([]);
  });

  it('ignores @cert-authority and @revoked lines as trusted keys, and deduplicates', () => {
    const entries = parseKnownHosts([
      `@cert-authority * ssh-ed25519 ${ED25519}`,
      `@revoked * ecdsa-sha2-nistp256 ${ECDSA}`,
      `h ssh-ed25519 ${ED25519}`,
      `h,other ssh-ed25519 ${ED25519}`,
    ].join('\n'));
    expect(findHostKeys(entries, 'h', 22)).toEqual([{ keyType: 'ssh-ed25519', keyBase64: ED25519 }]);
    expect(findHostKeys(entries, 'nobody', 22)).toEqual([]);
  });
});

describe('verifyHostKey', () => {
  const text = [
    `[127.0.0.1]:2222 ssh-ed25519 ${ED25519}`,
    `${hashedHost('[127.0.0.1]:2222')} ecdsa-sha2-nistp256 ${ECDSA}`,
  ].join('\n');
  const entries = parseKnownHosts(text);

  it('accepts any recorded key of the host, plain or hashed', () => {
    expect(verifyHostKey(entries, '127.0.0.1', 2222, ed25519Blob)).toEqual({ ok: true });
    expect(verifyHostKey(entries, '127.0.0.1', 2222, ecdsaBlob)).toEqual({ ok: true });
  });

  it('reports an unknown host with the presented fingerprint', () => {
    expect(verifyHostKey(entries, '127.0.0.1', 22, ed25519Blob)).toEqual({
      ok: false,
      reason: 'unknown',
      presented: { type: 'ssh-ed25519', fingerprint: ED25519_FP },
      expected: [],
    });
    expect(verifyHostKey([], 'anything', 22, ecdsaBlob)).toMatchObject({ ok: false, reason: 'unknown' });
  });

  it('reports a changed key as a mismatch, with every expected fingerprint', () => {
    const impostor = randomEd25519();
    const verdict = verifyHostKey(entries, '127.0.0.1', 2222, impostor.blob);
    expect(verdict).toEqual({
      ok: false,
      reason: 'mismatch',
      presented: { type: 'ssh-ed25519', fingerprint: fingerprintSha256(impostor.blob) },
      expected: [
        { type: 'ssh-ed25519', fingerprint: ED25519_FP },
        { type: 'ecdsa-sha2-nistp256', fingerprint: ECDSA_FP },
      ],
    });
  });

  it('refuses a revoked key even when the same key is also listed as trusted', () => {
    const withRevoked = parseKnownHosts(`${text}\n@revoked [127.0.0.1]:2222 ssh-ed25519 ${ED25519}\n`);
    expect(verifyHostKey(withRevoked, '127.0.0.1', 2222, ed25519Blob)).toMatchObject({
      ok: false,
      reason: 'revoked',
      presented: { fingerprint: ED25519_FP },
    });
    // The other, non-revoked key of the host is still fine.
    expect(verifyHostKey(withRevoked, '127.0.0.1', 2222, ecdsaBlob)).toEqual({ ok: true });
  });

  it('refuses a revoked key for every host, not only the hosts on its line', () => {
    const revokedElsewhere = parseKnownHosts(`${text}\n@revoked somewhere.else ssh-ed25519 ${ED25519}\n`);
    expect(verifyHostKey(revokedElsewhere, '127.0.0.1', 2222, ed25519Blob)).toMatchObject({ ok: false, reason: 'revoked' });
  });

  it('does not trust a @cert-authority key as a host key', () => {
    const caOnly = parseKnownHosts(`@cert-authority [127.0.0.1]:2222 ssh-ed25519 ${ED25519}\n`);
    expect(verifyHostKey(caOnly, '127.0.0.1', 2222, ed25519Blob)).toMatchObject({ ok: false, reason: 'unknown' });
  });

  it('does not let a negated pattern for this host vouch for it', () => {
    const negated = parseKnownHosts(`*,![127.0.0.1]:2222 ssh-ed25519 ${ED25519}\n`);
    expect(verifyHostKey(negated, '127.0.0.1', 2222, ed25519Blob)).toMatchObject({ ok: false, reason: 'unknown' });
    expect(verifyHostKey(negated, '127.0.0.1', 22, ed25519Blob)).toEqual({ ok: true });
  });
});

describe('hostKeyAlgorithmsFor', () => {
  it('offers only algorithms that produce a key we hold, RSA with its SHA-2 variants first', () => {
    expect(hostKeyAlgorithmsFor(['ssh-ed25519'])).toEqual(['ssh-ed25519']);
    expect(hostKeyAlgorithmsFor(['ssh-rsa', 'ssh-ed25519', 'ssh-rsa'])).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa', 'ssh-ed25519']);
    expect(hostKeyAlgorithmsFor(['sk-ssh-ed25519@openssh.com'])).toEqual([]);
    expect(hostKeyAlgorithmsFor([])).toEqual([]);
  });
});
