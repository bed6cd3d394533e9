import type { FastifyPluginAsync } from 'fastify';
import {
  relayFetchRequestSchema, relaySessionRequestSchema, RELAY_IDENTITY_PATTERN,
  type RelayFetchRequest, type RelaySession, type RelaySessionRequest,
} from '../../contract/relay.js';
import { APP_NAME_PATTERN } from '../../contract/names.js';
import { SPEC_OVERRIDES_HEADER } from '../../contract/spec-overrides.js';
import { fetchRelease, type RelayFetchOptions } from '../release/relay-fetch.js';
import type { RelaySessions } from '../release/relay-serve.js';
import type { ReleaseService, StoredDelta, StoredRelease } from '../release/service.js';
import { overridesOf, storedDelta, storedRelease, uploadQuery, type UploadQuery } from './releases.js';
import {
  answers, appParams, noBody, noQuery, releaseParams, type AppParams, type NoBody, type NoQuery, type ObjectSchemaOf, type ReleaseParams,
} from './schemas.js';

const relaySession = {
  type: 'object', additionalProperties: false, required: ['identity', 'address', 'port', 'expiresAt'],
  properties: { identity: { type: 'string' }, address: { type: 'string' }, port: { type: 'integer' }, expiresAt: { type: 'string' } },
} as const satisfies ObjectSchemaOf<RelaySession>;

const sessionParams = {
  type: 'object', additionalProperties: false, required: ['app', 'identity'],
  properties: { app: { type: 'string', pattern: APP_NAME_PATTERN }, identity: { type: 'string', pattern: RELAY_IDENTITY_PATTERN } },
} as const;
interface SessionParams { app: string; identity: string }

/** A peer fetch answers as the upload of its kind: StoredRelease, with `delta` for a delta. */
const fetchedRelease = {
  type: 'object', additionalProperties: false, required: storedRelease.required,
  properties: storedDelta.properties,
} as const;

const fetchHeaders = {
  type: 'object',
  properties: { [SPEC_OVERRIDES_HEADER]: { type: 'string', maxLength: 12_000 } },
} as const;
interface FetchHeaders { [SPEC_OVERRIDES_HEADER]?: string }

export interface RelayRouteOptions { sessions: RelaySessions; releases: ReleaseService; fetch?: RelayFetchOptions }

/** The upload-once relay (contract/relay.ts): serve a kept upload for one session; fetch one from a peer. */
export const relayRoutes: FastifyPluginAsync<RelayRouteOptions> = async (app, { sessions, releases, fetch }) => {
  app.post<{ Params: AppParams; Querystring: NoQuery; Body: RelaySessionRequest; Reply: RelaySession }>('/apps/:app/relay', {
    schema: { params: appParams, querystring: noQuery, body: relaySessionRequestSchema, response: answers({ 201: relaySession }) },
  }, async (request, reply) => reply.code(201).send(await sessions.open(request.params.app, request.body)));

  app.delete<{ Params: SessionParams; Querystring: NoQuery; Body: NoBody }>('/apps/:app/relay/:identity', {
    schema: { params: sessionParams, querystring: noQuery, body: noBody, response: answers({ 204: { type: 'null' } }) },
  }, async (request, reply) => {
    await sessions.close(request.params.app, request.params.identity);
    return reply.code(204).send();
  });

  app.post<{ Params: ReleaseParams; Querystring: UploadQuery; Headers: FetchHeaders; Body: RelayFetchRequest; Reply: StoredRelease | StoredDelta }>('/apps/:app/releases/:releaseId/fetch', {
    schema: { params: releaseParams, querystring: uploadQuery, headers: fetchHeaders, body: relayFetchRequestSchema, response: answers({ 201: fetchedRelease }) },
  }, async (request, reply) => {
    const { body, query, params } = request;
    const stored = await fetchRelease({
      kind: body.kind,
      origin: { address: body.from.address, port: body.from.port, identity: body.identity, key: body.key, sha256: body.sha256, bytes: body.bytes },
      upload: {
        app: params.app, releaseId: params.releaseId, actor: request.actor,
        specOverrides: overridesOf(request.headers[SPEC_OVERRIDES_HEADER]),
        ...(query.project ? { project: query.project } : {}), ...(query.env ? { env: query.env } : {}), ...(query.tag ? { tag: query.tag } : {}),
        ...(query.relay === '1' ? { relay: true } : {}),
      },
    }, releases, fetch);
    return reply.code(201).send(stored);
  });
};
