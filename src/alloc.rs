//! How the C allocator hands memory back. A whole-window read allocates a
//! few big vectors (the scan, the tracker's new table: tens of MB at a
//! million jobs) and frees the old ones. glibc serves blocks above its mmap
//! threshold with their own mapping, returned to the system when freed, but
//! it raises that threshold to the size of every such block freed (up to
//! 32 MiB), so from the second whole-window read on the big vectors come
//! from the heap, and freed heap memory mostly stays resident: measured
//! over a simulated day at a million jobs, resting memory went from 39 MB
//! after the first poll to 99 MB by the third hour (docs/performance.md).
//! A fixed threshold keeps big blocks in their own mappings.

/// Blocks at least this big get their own mapping, freed straight back to
/// the system. Above a page of API answers (about 200 KB inflated), so the
/// per-page buffers, reused poll after poll, stay on the heap.
pub(crate) const MMAP_THRESHOLD: usize = 1 << 20;

/// Sets the allocator up to return big freed blocks at once. Call it once,
/// first thing in `main` (the memory bench calls it too). Only glibc has
/// the dynamic threshold, so elsewhere (musl) it does nothing; the static
/// build of the container image links glibc statically and is set up the
/// same way (`bash scripts/bench-exporter.sh static` measures both builds).
pub fn return_big_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before
    // any thread is started, and M_MMAP_THRESHOLD with a value below
    // HEAP_MAX (32 MiB on 64-bit) is accepted. Setting it turns off the
    // dynamic adjustment (mallopt(3)).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

/// Hands the free memory inside the heap back to the system. A
/// self-hosted server's listing is a burst of small blocks (an id and a
/// few strings a job, for every job the server holds) freed together once
/// the poll is done, between blocks that live on; glibc keeps such holes
/// resident until asked.
pub(crate) fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it takes the arenas'
    // locks itself and may be called from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
