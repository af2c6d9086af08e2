# Recipes wrap plain cargo commands; the README's commands never need `just`.
# Get just with `cargo install just --locked` (Debian 12 has no package);
# `just --list` shows every recipe with one line on what it does.

# Run the whole test suite (what CI runs, minus fmt, clippy and the checks).
test:
    cargo test --workspace

# Check formatting and run clippy with warnings as errors, as CI does.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Check markdown links and anchors, and that each crate's modules import one way.
check:
    scripts/check-markdown-links
    scripts/check-import-cycles

# Everything CI runs, in CI's order (fmt, clippy, checks, tests, example).
ci:
    bash .ci/run

# Storage benchmarks, db_bench style: just bench fillrandom --preset throughput --num 1000000
bench *ARGS:
    cargo run --release -p ballast-bench -- {{ARGS}}

# Criterion micro-benchmarks of the engine's hot paths.
microbench:
    cargo bench -p ballast-storage

# Start the 3-node local cluster on 127.0.0.1 (configs in cluster/, data in cluster/data/).
cluster *ARGS:
    cargo run --release -p ballast-node -- cluster up {{ARGS}}

# Stop the local cluster gracefully (its data stays for the next `just cluster`).
cluster-stop:
    cargo run --release -p ballast-node -- cluster stop

# Show each local node's role, term and log indexes.
cluster-status:
    cargo run --release -p ballast-node -- cluster status

# redis-benchmark against a fresh local cluster's leader (needs redis-tools): just bench-cluster durable
bench-cluster PRESET="durable":
    scripts/bench-cluster {{PRESET}}

# Run the embedded-node example: a 3-node cluster inside one process.
example:
    cargo run -p ballast-node --example embedded_cluster

# Chaos on real processes: the standard set under one preset (just chaos balanced --duration 60s).
chaos PRESET="durable" *ARGS:
    cargo build --release -p ballast-node
    cargo run --release -p ballast-chaos -- standard --preset {{PRESET}} {{ARGS}}

# Deterministic simulation: just sim run --scenario all --seeds 100 (see sim/README.md).
sim *ARGS:
    cargo run --release -p ballast-sim -- {{ARGS}}

# The cluster simulation's nightly sweep: fresh seeds over every preset and fault kind for an hour.
sim-cluster-sweep SECS="3600":
    cargo run --release -p ballast-sim -- cluster --sweep-secs {{SECS}} --start $(date +%s)
