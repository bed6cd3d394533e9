/** Values shorter than this are not masked: "true", "prod" or a port would blank out ordinary text. */
export const MIN_MASKED_LENGTH = 6;

/**
 * Pure: `text` with every occurrence of each secret value replaced by "***" (longest first, so a
 * secret containing another is masked whole). Used on app output the agent hands out (log tails),
 * where the app may have printed a value of its env file.
 */
export function maskSecrets(text: string, secrets: Iterable<string>): string {
  const values = [...new Set(secrets)].filter((v) => v.length >= MIN_MASKED_LENGTH).sort((a, b) => b.length - a.length);
  let out = text;
  for (const value of values) out = out.split(value).join('***');
  return out;
}
