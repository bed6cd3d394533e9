# The Capistrano side of the bench: the sample app deployed the way a Capistrano + PM2 shop would,
# into one directory (releases/, current symlink) and one PM2 process restarted on every deploy
# and rollback. The harness (scripts/bench/capistrano.ts) sets every BENCH_CAP_* variable.
lock '~> 3.17'

set :application, 'sample'
set :repo_url, ENV.fetch('BENCH_CAP_REPO')
set :branch, ENV.fetch('BENCH_CAP_BRANCH', 'main')
set :deploy_to, ENV.fetch('BENCH_CAP_DEPLOY_TO')
set :keep_releases, 5
set :pty, false
set :log_level, :info
set :format_options, log_file: ENV.fetch('BENCH_CAP_LOG')
# The app's repository belongs to root and git refuses "dubious ownership" for the deploy user:
# a global config file written by the harness marks it safe, without touching the user's ~.
set :default_env, { 'GIT_CONFIG_GLOBAL' => ENV.fetch('BENCH_CAP_GITCONFIG') }

set :ssh_options, {
  user: ENV.fetch('BENCH_CAP_USER'),
  port: Integer(ENV.fetch('BENCH_CAP_PORT')),
  keys: [ENV.fetch('BENCH_CAP_KEY')],
  keys_only: true,
  auth_methods: %w[publickey],
  user_known_hosts_file: ENV.fetch('BENCH_CAP_KNOWN_HOSTS'),
  global_known_hosts_file: '/dev/null',
  verify_host_key: :always,
  use_agent: false,
}

server '127.0.0.1', roles: %w[app]

set :bench_node, ENV.fetch('BENCH_CAP_NODE')
set :bench_pm2, ENV.fetch('BENCH_CAP_PM2')
set :bench_pm2_home, ENV.fetch('BENCH_CAP_PM2_HOME')
set :bench_app_port, ENV.fetch('BENCH_CAP_APP_PORT')

namespace :pm2 do
  desc 'Start the app under PM2, or restart it with the new release (the usual `pm2 restart --update-env`)'
  task :restart do
    on roles(:app) do
      revision = capture(:cat, release_path.join('REVISION')).strip
      # Started through the `current` symlink, so a restart picks up whatever `current` points at now.
      script = current_path.join('server.js')
      env = {
        pm2_home: fetch(:bench_pm2_home),
        port: fetch(:bench_app_port),
        slipway_release: revision,
        slipway_slot: 'capistrano',
      }
      pm2 = [fetch(:bench_node), fetch(:bench_pm2)]
      with env do
        if test(*pm2, 'describe', 'sample')
          execute(*pm2, 'restart', 'sample', '--update-env')
        else
          execute(*pm2, 'start', script, '--name', 'sample')
        end
      end
    end
  end
end

# Runs after the `current` symlink moves, on deploy and on deploy:rollback alike.
after 'deploy:publishing', 'pm2:restart'
