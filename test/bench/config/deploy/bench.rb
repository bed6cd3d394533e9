# The sample app's stage: the bench's loopback host, configured in config/deploy.rb from BENCH_CAP_*.
