import type { FastifyPluginAsync } from 'fastify';

/**
 * Marks a plugin as applying to the whole API rather than to a context of its own: its hooks,
 * parsers and handlers reach every route registered after it. This is what the fastify-plugin
 * package does (fastify documents the two symbols); one function here saves a dependency.
 */
export function appWide<Options extends object>(name: string, plugin: FastifyPluginAsync<Options>): FastifyPluginAsync<Options> {
  const marked = plugin as FastifyPluginAsync<Options> & Record<symbol, unknown>;
  marked[Symbol.for('skip-override')] = true;
  marked[Symbol.for('fastify.display-name')] = name;
  return plugin;
}
