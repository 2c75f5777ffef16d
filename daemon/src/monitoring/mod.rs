//! What the daemon watches while it serves, and what it reports: drift of each
//! release's inputs and scores against its reference, GPU health and the fallback
//! policies it drives, the state directory's writability and free space, and the
//! readiness map they all report to (`/readyz`).

pub mod drift;
pub mod gpu;
pub mod readiness;
pub mod state;
