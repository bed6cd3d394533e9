import { APP_NAME_PATTERN, CONTENT_RELEASE_ID_PATTERN, SHA256_PATTERN } from './names.js';

/** manifest.json at the root of every release tarball. */
export interface ReleaseManifest {
  schemaVersion: 2;
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
    schemaVersion: { const: 2 },
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
  },
} as const;
