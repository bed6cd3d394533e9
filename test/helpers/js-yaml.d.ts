// The part of js-yaml (4.x, a devDependency) the workflow tests use; it ships no types of its own.
declare module 'js-yaml' {
  /** Parses one YAML document (YAML 1.2 core schema: `on:` stays a string key). */
  export function load(text: string, options?: { filename?: string }): unknown;
}
