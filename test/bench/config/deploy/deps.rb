# The real-dependency stage: the deps-app fixture (express + the bufferutil native addon) deployed
# the usual Capistrano + Node way: a fresh release dir from git, `npm ci --omit=dev` inside it (what
# the capistrano-npm plugin does, with `ci`), then the PM2 restart of config/deploy.rb. npm runs
# offline from a cache the harness warmed (BENCH_CAP_NPM_CACHE), so the figure is not the network.
set :application, 'deps'
set :default_env, fetch(:default_env).merge(
  'npm_config_cache' => ENV.fetch('BENCH_CAP_NPM_CACHE'),
  'npm_config_offline' => 'true',
  'npm_config_update_notifier' => 'false',
)

namespace :npm do
  desc 'Install production dependencies in the new release (npm ci --omit=dev)'
  task :ci do
    on roles(:app) do
      within release_path do
        execute :npm, 'ci', '--omit=dev', '--no-audit', '--no-fund'
      end
    end
  end
end

after 'deploy:updated', 'npm:ci'
