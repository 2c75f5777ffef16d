//! coffer-hw-tests: tests that need a real NVIDIA GPU, and their runner.
//!
//! It will hold the checks that cannot run on a CPU-only machine: NVML readings against
//! `nvidia-smi`, a CUDA build of cofferd serving a fully offloaded chat model, GPU vs CPU
//! output equality and throughput. Every test skips cleanly when no GPU is present.
//!
//! Nothing is implemented yet; this crate holds the place in the workspace.
