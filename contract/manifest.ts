import { APP_NAME_PATTERN, RELEASE_ID_PATTERN } from './names.js';

/** manifest.json at the root of every release tarball. */
export interface ReleaseManifest {
  schemaVersion: 1;
  app: string;
  /** Release id: the full commit SHA, suffixed "-dirty-<hash>" when packed from a dirty tree. */
  releaseId: string;
  sha: string;
  shortSha: string;
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
    'schemaVersion', 'app', 'releaseId', 'sha', 'shortSha', 'dirty', 'branch', 'author',
    'commitTime', 'buildTime', 'controllerVersion',
  ],
  properties: {
    schemaVersion: { const: 1 },
    app: { type: 'string', pattern: APP_NAME_PATTERN },
    releaseId: { type: 'string', pattern: RELEASE_ID_PATTERN },
    sha: { type: 'string', pattern: '^[0-9a-f]{40}$' },
    shortSha: { type: 'string', pattern: '^[0-9a-f]{7,40}$' },
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
