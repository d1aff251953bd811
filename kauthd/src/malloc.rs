//! Keeps glibc's allocator from holding on to memory that connection
//! threads used once.
//!
//! By default glibc gives threads up to eight malloc arenas per core, each
//! keeping what was freed in it, and raises its mmap threshold each time a
//! large block is freed, so that later large blocks (a decoded frame can
//! take a megabyte) are carved from those arenas too and stay resident. A
//! flood of connections then grows kauthd by megabytes per arena. Two
//! arenas and a fixed threshold keep the resident size near what is in use:
//! blocks over the threshold are mapped on their own and go back to the
//! system when freed.

/// Arenas the connection threads share (kauthd's work is argon2, not malloc).
pub const ARENA_MAX: i32 = 2;
/// Blocks from this size up are mapped on their own (glibc's initial value,
/// kept fixed).
pub const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Sets the limits; call it first thing in `main`, before any thread starts.
/// Returns false if glibc refused one of them (kauthd runs on regardless).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit_retained_memory() -> bool {
    // SAFETY: mallopt only changes allocator parameters; it takes plain
    // integers, and glibc documents both parameters as settable at any time.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) == 1
            && libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    }
}

/// Other C libraries have their own allocators: nothing to set.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_retained_memory() -> bool {
    true
}

/// Gives the free pages inside malloc's arenas back to the system: a burst
/// of requests can leave freed memory scattered between blocks still in
/// use, where glibc does not return it by itself. For quiet moments: it
/// walks every arena.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    // SAFETY: malloc_trim only hands free pages back; it takes a plain
    // integer and is thread-safe (it locks each arena it trims).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other C libraries: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_accepts_the_limits() {
        assert!(limit_retained_memory());
    }
}
