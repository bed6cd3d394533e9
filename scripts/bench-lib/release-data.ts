// Deterministic payloads: the same seed gives the same bytes on every machine and every run, so
// sizes and compressibility (and therefore the work measured) never drift between runs.
import { createCipheriv, createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

const MiB = 1024 * 1024;

/** An endless pseudo-random byte stream: the AES-128-CTR keystream of a key derived from `seed`. */
export function keystream(seed: string): (bytes: number) => Buffer {
  const key = createHash('sha256').update(`slipway-bench:${seed}`).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  return (bytes) => cipher.update(Buffer.alloc(bytes));
}

/** Writes `bytes` of incompressible data to `file`; returns its sha256. */
export async function writeRandomFile(file: string, bytes: number, seed: string): Promise<string> {
  const next = keystream(seed);
  const hash = createHash('sha256');
  const handle = await fs.open(file, 'w', 0o644);
  try {
    for (let left = bytes; left > 0; left -= MiB) {
      const chunk = next(Math.min(MiB, left));
      hash.update(chunk);
      await handle.write(chunk);
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

/** JavaScript-looking text that gzips about 4:1, like an app's own source and its dependencies. */
function sourceText(bytes: number, file: number): string {
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const id = ((i + 1) * 2654435761 + file * 40503) >>> 0;
    const part = `export function handler_${file}_${i}(request, reply) {\n`
      + `  const value${i % 97} = request.params.id * ${i % 1013} + ${(i * 7919) % 10007};\n`
      + `  if (value${i % 97} > ${id % 65536}) return reply.code(${200 + (i % 4)}).send({ id: '${id.toString(36)}' });\n`
      + `  return { ok: true, key: 'k${(id ^ 0x5bd1e995).toString(16)}', at: ${i} };\n}\n`;
    parts.push(part);
    size += part.length;
  }
  return parts.join('').slice(0, bytes);
}

/**
 * Fills `dir` with `randomBytes` of random blobs (5 MiB files) and `sourceBytes` of source-like
 * text (1 MiB files): the untracked build output a release tarball carries next to the code.
 */
export async function writeReleaseData(dir: string, sizes: { randomBytes: number; sourceBytes: number }, seed: string): Promise<void> {
  await fs.mkdir(path.join(dir, 'assets'), { recursive: true });
  await fs.mkdir(path.join(dir, 'lib'), { recursive: true });
  let n = 0;
  for (let left = sizes.randomBytes; left > 0; left -= 5 * MiB, n++) {
    await writeRandomFile(path.join(dir, 'assets', `blob-${n}.bin`), Math.min(5 * MiB, left), `${seed}:blob:${n}`);
  }
  n = 0;
  for (let left = sizes.sourceBytes; left > 0; left -= MiB, n++) {
    await fs.writeFile(path.join(dir, 'lib', `module-${n}.js`), sourceText(Math.min(MiB, left), n));
  }
}
