import { APP_NAME_PATTERN, CONTENT_RELEASE_ID_PATTERN, SHA256_PATTERN } from './names.js';
import { buildPlatformSchema, type BuildPlatform } from './platform.js';
import type { AppSpec } from './spec.js';

/** manifest.json at the root of every release tarball. */
export interface ReleaseManifest {
  /** 3 adds spec, specDigest, build and tag; a box still accepts 2 (a release without a spec). */
  schemaVersion: 2 | 3;
  app: string;
  /** `<first 12 hex of sha>-<first 12 hex of contentDigest>` (contract/release-content.ts). */
  releaseId: string;
  /** The full commit SHA the release was packed from (HEAD's, for a dirty work tree). */
  sha: string;
  shortSha: string;
  /** sha256 over the release's file manifest (contract/release-content.ts); manifest.json itself is left out. */
  contentDigest: string;
  /** Packed from a work tree with uncommitted changes (`deploy push --allow-dirty`). */
  dirty: boolean;
  branch: string | null;
  author: { name: string; email: string };
  commitTime: string;
  buildTime: string;
  controllerVersion: string;
  /** The app spec (contract/spec.ts), normalised; null when the commit has no deploy.spec.json. */
  spec?: AppSpec | null;
  /** specDigest(spec) (contract/spec.ts), so the agent can tell a spec from the one packed. */
  specDigest?: string | null;
  /** How and where dependencies were built; null when nothing was built. */
  build?: { on: 'controller' | 'host'; platform: BuildPlatform | null; steps: string[] } | null;
  /** Older controllers wrote the git tag the release was pushed by; now always null (the tag travels in the deployment request, so the same commit packs to the same bytes). */
  tag?: string | null;
}

export const MANIFEST_FILE = 'manifest.json';

export const manifestSchema = {
  type: 'object',
  additionalProperties: false,
  required: [
    'schemaVersion', 'app', 'releaseId', 'sha', 'shortSha', 'contentDigest', 'dirty', 'branch', 'author',
    'commitTime', 'buildTime', 'controllerVersion',
  ],
  properties: {
    schemaVersion: { enum: [2, 3] },
    app: { type: 'string', pattern: APP_NAME_PATTERN },
    releaseId: { type: 'string', pattern: CONTENT_RELEASE_ID_PATTERN },
    sha: { type: 'string', pattern: '^[0-9a-f]{40}$' },
    shortSha: { type: 'string', pattern: '^[0-9a-f]{7,40}$' },
    contentDigest: { type: 'string', pattern: SHA256_PATTERN },
    dirty: { type: 'boolean' },
    branch: { type: ['string', 'null'], maxLength: 255 },
    author: {
      type: 'object',
      additionalProperties: false,
      required: ['name', 'email'],
      properties: { name: { type: 'string', maxLength: 255 }, email: { type: 'string', maxLength: 255 } },
    },
    commitTime: { type: 'string', format: 'date-time' },
    buildTime: { type: 'string', format: 'date-time' },
    controllerVersion: { type: 'string', maxLength: 64 },
    // Checked whole by checkAppSpec (contract/spec.ts) wherever a manifest is read. Open here so a
    // response schema built on this one (fast-json-stringify) sends the spec instead of `{}`.
    spec: { type: ['object', 'null'], additionalProperties: true },
    specDigest: { anyOf: [{ type: 'null' }, { type: 'string', pattern: SHA256_PATTERN }] },
    build: {
      anyOf: [{ type: 'null' }, {
        type: 'object',
        additionalProperties: false,
        required: ['on', 'platform', 'steps'],
        properties: {
          on: { enum: ['controller', 'host'] },
          platform: { anyOf: [{ type: 'null' }, buildPlatformSchema] },
          steps: { type: 'array', maxItems: 256, items: { type: 'string', maxLength: 4096 } },
        },
      }],
    },
    tag: { anyOf: [{ type: 'null' }, { type: 'string', maxLength: 255, pattern: '^[^\\u0000\\s]+$' }] },
  },
} as const;
