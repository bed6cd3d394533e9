/**
 * Names as a file system that folds case or normalises Unicode sees them (casefold ext4 and
 * tmpfs, APFS, HFS+, NTFS): two names with one key may be one file there. The release checks
 * that reason about names (symlink traversal, duplicates, type conflicts) compare these keys,
 * and refuse an archive spelling one name two ways, so their verdict holds on every file system.
 *
 * The key folds at least as much as any of those file systems, since folding more only refuses
 * more: canonical decomposition (NFD; APFS and casefold ext4 compare normalised names), without
 * default-ignorable code points (HFS+ skips them), upper- then lower-cased (this covers full
 * case folding: `ß` and `SS`, `ﬁ` and `fi`, the Kelvin sign and `k`), decomposed again.
 */
const IGNORABLE = /\p{Default_Ignorable_Code_Point}/gu;

export function foldName(name: string): string {
  return name.normalize('NFD').replace(IGNORABLE, '').toUpperCase().toLowerCase().normalize('NFD');
}

/** A name for a message, with everything outside printable ASCII escaped, so `é` and `e\u0301` look different. */
export function spelled(name: string): string {
  return name.replace(/[^\x20-\x7e]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}
