//! Link options of the module.

fn main() {
    // The module stays mapped once a process has loaded it: `pam_end`
    // does not unmap it, so a process that runs many logins (a panel, a
    // mail server) loads it once, and no thread-local destructor of Rust's
    // runtime can run after its code is gone.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
