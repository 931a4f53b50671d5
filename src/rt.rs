//! Runtime helpers shared by the I/O layers.

/// Runs `f`, which may block (on a channel, a file, the array's loop), from
/// async code on a multi-threaded tokio runtime without stalling its other
/// tasks, or directly anywhere else.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
