//! Integration tests of weft-tools: every tool through the public API and
//! the module registry, and one end-to-end session through the kernel.
//!
//! One test binary (modules below) keeps link time down.

mod bash;
mod common;
mod end_to_end;
mod filesystem;
mod search;
mod task;
