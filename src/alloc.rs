//! The memory allocator of Switchboard's own processes: the `switchboard` binary (CLI, server,
//! MCP bridge) and the benches that stand in for it. Not the scripted test agent: the bench's
//! floor drives it, and it stays on the system allocator there as in the layer's runs.
//!
//! Why not glibc's malloc: the tell path hands memory from thread to thread (a tell built on a
//! runtime thread is written and dropped by the batch thread, an event by the event writer, a
//! row read back by the batch thread is dropped on a runtime thread). glibc frees such a chunk
//! into the arena of the thread that allocated it, under that arena's lock, so with 50 pairs at
//! work the threads kept waiting on each other's arena locks (13 % of the runtime threads'
//! samples were in glibc's lock wait and wake, each a futex call and a context switch).
//! jemalloc frees into the freeing thread's cache and returns it to its arena in batches.
//!
//! On Linux it replaces `malloc` for the whole process (the crate's
//! `unprefixed_malloc_on_supported_platforms`; elsewhere only Rust's allocations, with
//! jemalloc's default options):
//! SQLite, compiled into the binary, allocates through `malloc` for every statement, page and
//! row, and most of the waiting was there. Measured at 50 pairs, jemalloc for Rust's
//! allocations alone made no difference beyond the noise; for every allocation it cut the
//! process's CPU per tell by a quarter (BENCHMARKS.md, seventh pass).
//!
//! [`CONF`] keeps the resident memory where glibc's was (one arena, small thread caches, freed
//! pages returned within half a second): with jemalloc's defaults (an arena per thread up to four
//! per core, pages kept ten seconds) the session bench's peak RSS went from 25 to 35 MB.

pub use tikv_jemallocator::Jemalloc;

/// jemalloc's options, a C string read when it starts (see [`use_jemalloc!`]); `MALLOC_CONF`
/// in the environment adds to them.
pub const CONF: &[u8; 62] = b"narenas:1,tcache_max:4096,dirty_decay_ms:500,muzzy_decay_ms:0\0";

/// Makes jemalloc, with [`CONF`], the allocator of the binary whose root invokes it.
#[macro_export]
macro_rules! use_jemalloc {
    () => {
        #[global_allocator]
        static GLOBAL: $crate::alloc::Jemalloc = $crate::alloc::Jemalloc;

        /// jemalloc's `malloc_conf`: a pointer to a C string.
        #[used]
        #[export_name = "malloc_conf"]
        static MALLOC_CONF: &[u8; $crate::alloc::CONF.len()] = $crate::alloc::CONF;
    };
}
