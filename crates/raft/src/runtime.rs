//! The runtime openraft runs on: tokio, with a random source the
//! simulation can seed.
//!
//! openraft draws random numbers for election timeouts and tick jitter from
//! its runtime's `thread_rng()`. With plain tokio those come from the
//! operating system, so two simulation runs of one seed would elect
//! different leaders. [`BallastRuntime`] is tokio with one difference: a
//! future run inside [`BallastRuntime::seeded`] draws them from a seed,
//! and so does every task openraft spawns from it (each child gets a seed
//! derived from its parent's, in spawn order, so the tree of tasks is as
//! reproducible as the run). Outside such a scope (production, ordinary
//! tests) it is tokio's own generator, unchanged.
//!
//! openraft ships `DeterministicRng<TokioRuntime>` for the same purpose, but
//! it panics when asked for a random number outside a seeded scope, and a
//! node cannot prove that no openraft path is ever entered from a task it
//! spawned itself; falling back to the operating system is the safe
//! failure for production.

use openraft::rt::{AsyncRuntime, OptionalSend, Select2, Select3, Select4};
use openraft_rt_tokio::TokioRuntime;
use rand_rt::rngs::SmallRng;
use rand_rt::SeedableRng;
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::time::Duration;

tokio::task_local! {
    /// The seed of the current task, when it runs in a seeded scope.
    static SEED: Cell<u64>;
}

/// SplitMix64 with increment `gamma`: a bijective mixer, so the seeds of
/// children and of successive draws never collide with their parent's.
fn mix(seed: u64, gamma: u64) -> u64 {
    let z = seed.wrapping_add(gamma);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Increment for a spawned child's seed.
const CHILD: u64 = 0x9e37_79b9_7f4a_7c15;
/// Increment for the parent's next seed after a spawn or a draw.
const NEXT: u64 = 0x6a09_e667_f3bc_c908;

/// The current task's seed, advanced; `None` outside a seeded scope.
fn take_seed() -> Option<u64> {
    SEED.try_with(|cell| {
        let seed = cell.get();
        cell.set(mix(seed, NEXT));
        seed
    })
    .ok()
}

/// Tokio, with a random source that [`BallastRuntime::seeded`] makes
/// reproducible. See the module docs.
#[derive(Debug)]
pub struct BallastRuntime {
    inner: TokioRuntime,
}

impl BallastRuntime {
    /// Runs `future` with its random numbers (and those of every task
    /// openraft spawns from it) drawn from `seed`.
    pub fn seeded<F: Future>(seed: u64, future: F) -> impl Future<Output = F::Output> {
        SEED.scope(Cell::new(seed), future)
    }

    /// Whether the current task runs in a seeded scope.
    pub fn is_seeded() -> bool {
        SEED.try_with(|_| ()).is_ok()
    }
}

impl AsyncRuntime for BallastRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = SmallRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        match take_seed() {
            Some(seed) => TokioRuntime::spawn(SEED.scope(Cell::new(mix(seed, CHILD)), future)),
            None => TokioRuntime::spawn(future),
        }
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn select2<A, B>(
        a: A,
        b: B,
    ) -> impl Future<Output = Select2<A::Output, B::Output>> + OptionalSend
    where
        A: Future + OptionalSend,
        B: Future + OptionalSend,
    {
        TokioRuntime::select2(a, b)
    }

    fn select3<A, B, C>(
        a: A,
        b: B,
        c: C,
    ) -> impl Future<Output = Select3<A::Output, B::Output, C::Output>> + OptionalSend
    where
        A: Future + OptionalSend,
        B: Future + OptionalSend,
        C: Future + OptionalSend,
    {
        TokioRuntime::select3(a, b, c)
    }

    fn select4<A, B, C, D>(
        a: A,
        b: B,
        c: C,
        d: D,
    ) -> impl Future<Output = Select4<A::Output, B::Output, C::Output, D::Output>> + OptionalSend
    where
        A: Future + OptionalSend,
        B: Future + OptionalSend,
        C: Future + OptionalSend,
        D: Future + OptionalSend,
    {
        TokioRuntime::select4(a, b, c, d)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        match take_seed() {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_rng(&mut rand_rt::rng()),
        }
    }

    type Mpsc = <TokioRuntime as AsyncRuntime>::Mpsc;
    type Watch = <TokioRuntime as AsyncRuntime>::Watch;
    type Oneshot = <TokioRuntime as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::Mutex<T>;

    fn new(threads: usize) -> Self {
        BallastRuntime {
            inner: TokioRuntime::new(threads),
        }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.inner.block_on(future)
    }

    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        TokioRuntime::spawn_blocking(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_rt::RngExt;

    fn draws() -> Vec<u64> {
        let mut rng = BallastRuntime::thread_rng();
        (0..4).map(|_| rng.random_range(0..1_000_000)).collect()
    }

    async fn seeded_draws(seed: u64) -> (Vec<u64>, Vec<u64>) {
        BallastRuntime::seeded(seed, async {
            let own = draws();
            let child = BallastRuntime::spawn(async { draws() }).await.unwrap();
            (own, child)
        })
        .await
    }

    #[tokio::test]
    async fn a_seed_gives_the_same_numbers_to_a_task_and_its_children() {
        let a = seeded_draws(7).await;
        let b = seeded_draws(7).await;
        let c = seeded_draws(8).await;
        assert_eq!(a, b, "one seed, one sequence");
        assert_ne!(a, c, "another seed, another sequence");
        assert_ne!(a.0, a.1, "a child does not repeat its parent's numbers");
    }

    #[tokio::test]
    async fn outside_a_seeded_scope_numbers_come_from_the_system() {
        assert!(!BallastRuntime::is_seeded());
        // 4 draws out of a million agreeing twice by chance: about 1e-24.
        assert_ne!(draws(), draws());
        let spawned = BallastRuntime::spawn(async { BallastRuntime::is_seeded() })
            .await
            .unwrap();
        assert!(!spawned, "an unseeded spawn stays unseeded");
    }
}
