import type { FastifyPluginAsync } from 'fastify';
import type { Readable } from 'node:stream';
import { createReadStream } from 'node:fs';
import {
  SHA256_HEADER, type PromotionRecord, type PromotionRecordRequest, type PromotionVerdict, type ReleaseListEntry, type ReleaseSpecView,
} from '../../contract/api.js';
import { manifestSchema } from '../../contract/manifest.js';
import { APP_NAME_PATTERN, RELEASE_ID_PATTERN, SHA256_PATTERN } from '../../contract/names.js';
import { SlipwayError } from '../../contract/errors.js';
import { decodeSpecOverrides, SPEC_OVERRIDES_HEADER, type SpecOverrides } from '../../contract/spec-overrides.js';
import { ENV_NAME_PATTERN, TAG_PATTERN } from '../../contract/api.js';
import { RELAY_KEEP_QUERY } from '../../contract/relay.js';
import type { CleanupResult } from '../release/cleanup.js';
import type { ReleaseService, StoredDelta, StoredRelease, UploadInput } from '../release/service.js';
import type { ReleaseDetail, StatusService } from '../status.js';
import { refuseOtherMediaTypes } from '../plugins/content-types.js';
import {
  answers, appParams, noBody, noQuery, nullable, releaseParams, slotSchema, stringList,
  type AppParams, type NoBody, type NoQuery, type ObjectSchemaOf, type ReleaseParams,
} from './schemas.js';

/** What an upload may be sent as: the gzip tarball's bytes, streamed to the release store. */
const TARBALL_TYPES = ['application/gzip', 'application/octet-stream'] as const;

const uploadHeaders = {
  type: 'object',
  required: [SHA256_HEADER, 'content-length'],
  properties: {
    [SHA256_HEADER]: { type: 'string', pattern: SHA256_PATTERN }, 'content-length': { type: 'string', pattern: '^[0-9]{1,15}$' },
    [SPEC_OVERRIDES_HEADER]: { type: 'string', maxLength: 12_000 },
  },
} as const;
interface UploadHeaders { [SHA256_HEADER]: string; 'content-length': string; [SPEC_OVERRIDES_HEADER]?: string }

/**
 * ?project= (the manifest's app, when the box app is an environment's name), ?env=, ?tag=, and
 * ?relay=1: keep the verified bytes for a relay session (contract/relay.ts).
 */
export const uploadQuery = {
  type: 'object', additionalProperties: false,
  properties: {
    project: { type: 'string', pattern: APP_NAME_PATTERN },
    env: { type: 'string', pattern: ENV_NAME_PATTERN },
    tag: { type: 'string', maxLength: 255, pattern: TAG_PATTERN },
    [RELAY_KEEP_QUERY]: { type: 'string', enum: ['1'] },
  },
} as const;
export interface UploadQuery { project?: string; env?: string; tag?: string; [RELAY_KEEP_QUERY]?: '1' }

/** The overrides header of an upload, decoded and checked; absent: null. */
export function overridesOf(header: string | undefined): SpecOverrides | null {
  if (header === undefined) return null;
  try {
    return decodeSpecOverrides(header);
  } catch (error) {
    throw new SlipwayError('invalid_request', `${SPEC_OVERRIDES_HEADER} ${(error as Error).message}`, {
      status: 400, hint: 'send the environment\'s spec overrides as deploy push does (base64url JSON)',
    });
  }
}

/** What an upload request (full or delta) asks the release service to store. */
function uploadInput(request: {
  params: ReleaseParams; query: UploadQuery; headers: UploadHeaders; body: Readable | undefined; actor: string;
}): UploadInput {
  const { project, env, tag } = request.query;
  return {
    app: request.params.app, releaseId: request.params.releaseId, sha256: request.headers[SHA256_HEADER],
    source: request.body, expectedBytes: Number(request.headers['content-length']), actor: request.actor,
    specOverrides: overridesOf(request.headers[SPEC_OVERRIDES_HEADER]),
    ...(project ? { project } : {}), ...(env ? { env } : {}), ...(tag ? { tag } : {}),
    ...(request.query[RELAY_KEEP_QUERY] === '1' ? { relay: true } : {}),
  };
}

export const storedRelease = {
  type: 'object', additionalProperties: false, required: ['releaseId', 'bytes', 'dir'],
  properties: { releaseId: { type: 'string' }, bytes: { type: 'integer' }, dir: { type: 'string' } },
} as const satisfies ObjectSchemaOf<StoredRelease>;

export const storedDelta = {
  type: 'object', additionalProperties: false, required: ['releaseId', 'bytes', 'dir', 'delta'],
  properties: {
    ...storedRelease.properties,
    delta: {
      type: 'object', additionalProperties: false, required: ['received', 'linked', 'copied'],
      properties: { received: { type: 'integer' }, linked: { type: 'integer' }, copied: { type: 'integer' } },
    },
  },
} as const satisfies ObjectSchemaOf<StoredDelta>;

/** A delta upload's question: which of these file contents (sha256) does the host lack? */
const MAX_ASKED_CONTENTS = 200_000;
const missingRequest = {
  type: 'object', additionalProperties: false, required: ['sha256'],
  properties: { sha256: { type: 'array', maxItems: MAX_ASKED_CONTENTS, items: { type: 'string', pattern: SHA256_PATTERN } } },
} as const;
interface MissingRequest { sha256: string[] }
const missingAnswer = {
  type: 'object', additionalProperties: false, required: ['missing'],
  properties: { missing: stringList },
} as const satisfies ObjectSchemaOf<{ missing: string[] }>;

const releaseDetail = {
  type: 'object', additionalProperties: false, required: ['releaseId', 'state', 'bytes', 'sha256', 'createdAt', 'manifest'],
  properties: {
    releaseId: { type: 'string' }, state: { type: 'string' }, bytes: { type: 'integer' }, sha256: { type: 'string' },
    createdAt: { type: 'string' }, manifest: manifestSchema,
  },
} as const satisfies ObjectSchemaOf<ReleaseDetail>;

const releaseListEntry = {
  type: 'object', additionalProperties: false,
  required: ['releaseId', 'sha', 'state', 'recordedState', 'rolledBack', 'bytes', 'createdAt', 'liveAt', 'slots', 'branch', 'author', 'commitTime', 'dirty'],
  properties: {
    releaseId: { type: 'string' }, sha: { type: 'string' }, state: { type: 'string' }, recordedState: { type: 'string' },
    rolledBack: {
      type: ['object', 'null'], additionalProperties: false, required: ['at', 'by', 'reason'],
      properties: { at: { type: 'string' }, by: { type: 'string' }, reason: nullable('string') },
    },
    bytes: { type: 'integer' },
    createdAt: { type: 'string' }, liveAt: nullable('string'), slots: { type: 'array', items: slotSchema }, branch: nullable('string'),
    author: { type: 'string' }, commitTime: { type: 'string' }, dirty: { type: 'boolean' }, specDigest: nullable('string'),
  },
} as const satisfies ObjectSchemaOf<ReleaseListEntry>;

const releaseList = {
  type: 'object', additionalProperties: false, required: ['releases'],
  properties: { releases: { type: 'array', items: releaseListEntry } },
} as const satisfies ObjectSchemaOf<{ releases: ReleaseListEntry[] }>;

const releaseSpec = {
  type: 'object', additionalProperties: false, required: ['releaseId', 'spec', 'specDigest'],
  properties: {
    releaseId: { type: 'string' },
    // Checked when the release was stored; open so the whole spec is sent.
    spec: { type: ['object', 'null'], additionalProperties: true },
    specDigest: nullable('string'),
  },
} as const satisfies ObjectSchemaOf<ReleaseSpecView>;

const cleanupResult = {
  type: 'object', additionalProperties: false, required: ['app', 'removed', 'kept', 'skipped'],
  properties: { app: { type: 'string' }, removed: stringList, kept: stringList, skipped: nullable('string') },
} as const satisfies ObjectSchemaOf<CleanupResult>;

const promotionQuery = {
  type: 'object', additionalProperties: false, properties: { maxAgeMs: { type: 'string', pattern: '^[0-9]{1,15}$' } },
} as const;
interface PromotionQuery { maxAgeMs?: string }

const promotionVerdict = {
  type: 'object', additionalProperties: false,
  required: ['app', 'releaseId', 'passed', 'reason', 'message', 'deploymentId', 'succeededAt', 'sha256', 'artifactBytes'],
  properties: {
    app: { type: 'string' }, releaseId: { type: 'string' }, passed: { type: 'boolean' },
    reason: { type: 'string', enum: ['passed', 'never_deployed', 'failed', 'rolled_back', 'still_watching', 'too_old'] },
    message: { type: 'string' }, deploymentId: nullable('integer'), succeededAt: nullable('string'), sha256: nullable('string'),
    artifactBytes: nullable('integer'),
  },
} as const satisfies ObjectSchemaOf<PromotionVerdict>;

const shortText = (max: number) => ({ type: 'string', maxLength: max, pattern: '^[^\\u0000-\\u001f]*$' }) as const;
const promotionRecordRequest = {
  type: 'object', additionalProperties: false,
  required: ['releaseId', 'side', 'event', 'fromEnv', 'toEnv', 'otherHost', 'reason', 'gate', 'sha'],
  properties: {
    releaseId: { type: 'string', pattern: RELEASE_ID_PATTERN },
    side: { type: 'string', enum: ['source', 'target'] },
    event: { type: 'string', enum: ['promoted', 'refused', 'forced'] },
    fromEnv: { anyOf: [{ type: 'null' }, shortText(64)] }, toEnv: { anyOf: [{ type: 'null' }, shortText(64)] },
    otherHost: shortText(300), reason: { anyOf: [{ type: 'null' }, shortText(500)] }, gate: shortText(1000),
    sha: { anyOf: [{ type: 'null' }, { type: 'string', pattern: '^[0-9a-f]{40}$' }] },
  },
} as const;

const promotionRecordProperties = {
  ...promotionRecordRequest.properties,
  id: { type: 'integer' }, app: { type: 'string' }, actor: { type: 'string' }, at: { type: 'string' },
  fromEnv: nullable('string'), toEnv: nullable('string'), reason: nullable('string'), sha: nullable('string'),
  releaseId: { type: 'string' }, otherHost: { type: 'string' }, gate: { type: 'string' },
} as const;
const promotionRecord = {
  type: 'object', additionalProperties: false,
  required: [...promotionRecordRequest.required, 'id', 'app', 'actor', 'at'],
  properties: promotionRecordProperties,
} as const satisfies ObjectSchemaOf<PromotionRecord>;
const promotionList = {
  type: 'object', additionalProperties: false, required: ['promotions'],
  properties: { promotions: { type: 'array', items: promotionRecord } },
} as const satisfies ObjectSchemaOf<{ promotions: PromotionRecord[] }>;

export interface ReleaseRouteOptions { status: StatusService; releases: ReleaseService }

/** Releases of an app: list, look up, upload, clean up. */
export const releaseRoutes: FastifyPluginAsync<ReleaseRouteOptions> = async (app, { status, releases }) => {
  app.get<{ Params: AppParams; Querystring: NoQuery; Reply: { releases: ReleaseListEntry[] } }>('/apps/:app/releases', {
    schema: { params: appParams, querystring: noQuery, response: answers({ 200: releaseList }) },
  }, async (request) => ({ releases: status.releases(request.params.app) }));

  app.get<{ Params: ReleaseParams; Querystring: NoQuery; Reply: ReleaseDetail }>('/apps/:app/releases/:releaseId', {
    schema: { params: releaseParams, querystring: noQuery, response: answers({ 200: releaseDetail }) },
  }, async (request) => status.release(request.params.app, request.params.releaseId));

  // What `deploy diff` compares: the spec a release carries in its manifest.
  app.get<{ Params: ReleaseParams; Querystring: NoQuery; Reply: ReleaseSpecView }>('/apps/:app/releases/:releaseId/spec', {
    schema: { params: releaseParams, querystring: noQuery, response: answers({ 200: releaseSpec }) },
  }, async (request) => {
    const { releaseId, manifest } = status.release(request.params.app, request.params.releaseId);
    return { releaseId, spec: manifest.spec ?? null, specDigest: manifest.specDigest ?? null };
  });

  // The verified tarball the release was stored from, for a promotion to another host.
  app.get<{ Params: ReleaseParams; Querystring: NoQuery }>('/apps/:app/releases/:releaseId/artifact', {
    // The body is the gzip stream (never serialised); the schema documents it and the errors.
    schema: { params: releaseParams, querystring: noQuery, response: answers({ 200: { type: 'string', description: 'the tarball, application/gzip' } }) },
  }, async (request, reply) => {
    const artifact = await releases.artifact(request.params.app, request.params.releaseId);
    return reply.header(SHA256_HEADER, artifact.sha256).header('content-length', String(artifact.bytes))
      .type('application/gzip').send(createReadStream(artifact.file));
  });

  // This environment's gate for a release: may it be promoted from here?
  app.get<{ Params: ReleaseParams; Querystring: PromotionQuery; Reply: PromotionVerdict }>('/apps/:app/releases/:releaseId/promotion', {
    schema: { params: releaseParams, querystring: promotionQuery, response: answers({ 200: promotionVerdict }) },
  }, async (request) => releases.promotion(request.params.app, request.params.releaseId,
    request.query.maxAgeMs === undefined ? null : Number(request.query.maxAgeMs)));

  app.post<{ Params: AppParams; Querystring: NoQuery; Body: PromotionRecordRequest; Reply: PromotionRecord }>('/apps/:app/promotions', {
    schema: { params: appParams, querystring: noQuery, body: promotionRecordRequest, response: answers({ 201: promotionRecord }) },
  }, async (request, reply) => reply.code(201).send(releases.recordPromotion(request.params.app, request.body, request.actor)));

  app.get<{ Params: AppParams; Querystring: NoQuery; Reply: { promotions: PromotionRecord[] } }>('/apps/:app/promotions', {
    schema: { params: appParams, querystring: noQuery, response: answers({ 200: promotionList }) },
  }, async (request) => ({ promotions: releases.promotions(request.params.app, 100) }));

  app.post<{ Params: AppParams; Querystring: NoQuery; Body: NoBody; Reply: CleanupResult }>('/apps/:app/releases/cleanup', {
    schema: { params: appParams, querystring: noQuery, body: noBody, response: answers({ 200: cleanupResult }) },
  }, async (request) => releases.cleanup(request.params.app, request.actor));

  // Before a delta upload: the contents the host lacks (from the index of its kept releases).
  app.post<{ Params: AppParams; Querystring: NoQuery; Body: MissingRequest; Reply: { missing: string[] } }>('/apps/:app/files/missing', {
    // 67 bytes per hash as JSON: room for MAX_ASKED_CONTENTS of them.
    bodyLimit: 16 * 1024 * 1024,
    schema: { params: appParams, querystring: noQuery, body: missingRequest, response: answers({ 200: missingAnswer }) },
  }, async (request) => releases.missingContents(request.params.app, request.body.sha256));

  // The upload has a context of its own: its body is the tarball, streamed, never parsed as JSON.
  await app.register(async (upload) => {
    upload.removeAllContentTypeParsers();
    upload.addContentTypeParser([...TARBALL_TYPES], (_request, payload, done) => done(null, payload));
    refuseOtherMediaTypes(upload, TARBALL_TYPES);
    // A refused upload may still be arriving: the connection is closed after the answer, or
    // Node would quietly read the rest of it.
    upload.addHook('onError', async (_request, reply) => { reply.header('connection', 'close'); });

    upload.put<{ Params: ReleaseParams; Querystring: UploadQuery; Headers: UploadHeaders; Body: Readable | undefined; Reply: StoredRelease }>('/apps/:app/releases/:releaseId', {
      schema: { params: releaseParams, querystring: uploadQuery, headers: uploadHeaders, response: answers({ 201: storedRelease }) },
    }, async (request, reply) => reply.code(201).send(await releases.receive(uploadInput(request))));

    // A delta upload: the bundle of the contents the host lacks, with the file manifest (store.ts ingestDelta).
    upload.put<{ Params: ReleaseParams; Querystring: UploadQuery; Headers: UploadHeaders; Body: Readable | undefined; Reply: StoredDelta }>('/apps/:app/releases/:releaseId/delta', {
      schema: { params: releaseParams, querystring: uploadQuery, headers: uploadHeaders, response: answers({ 201: storedDelta }) },
    }, async (request, reply) => reply.code(201).send(await releases.receiveDelta(uploadInput(request))));
  });
};
