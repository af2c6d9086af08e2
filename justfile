# Recipes wrap plain cargo commands; the README's commands never need `just`.

# Run the whole test suite (what CI runs, minus fmt and clippy).
test:
    cargo test --workspace

# fmt check and clippy, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Storage benchmarks: just bench fillrandom --preset throughput --num 1000000
bench *ARGS:
    cargo run --release -p ballast-bench -- {{ARGS}}

# Criterion micro-benchmarks of the engine's hot paths.
microbench:
    cargo bench -p ballast-storage

# The 3-node local cluster on 127.0.0.1 (configs in cluster/, data in cluster/data/).
cluster *ARGS:
    cargo run --release -p ballast-node -- cluster up {{ARGS}}

cluster-stop:
    cargo run --release -p ballast-node -- cluster stop

cluster-status:
    cargo run --release -p ballast-node -- cluster status

# redis-benchmark against the local cluster's leader, one preset (needs redis-tools):
# just bench-cluster durable
bench-cluster PRESET="durable":
    scripts/bench-cluster {{PRESET}}

# Deterministic simulation: just sim run --scenario all --seeds 100 (see sim/README.md).
sim *ARGS:
    cargo run --release -p ballast-sim -- {{ARGS}}
