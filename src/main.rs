//! The `hookstream` command; see `hookstream --help` and the library's documentation.

/// Webhook handling allocates many small, short-lived objects; glibc's allocator spent about 30 %
/// of the CPU of an accepted webhook on them (perf), mimalloc far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hookstream::cli::run()
}
